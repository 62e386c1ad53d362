package bench

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync/atomic"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/internal/rpcstatus"
)

// blobOverhead is what each blob adds to a batch request or response
// besides its content: the digest (64 hex characters and a size), the
// status and the protobuf framing. Counting it keeps a batch whose content
// is exactly at the limit from going over a server that compares the whole
// message size against max_batch_total_size_bytes.
const blobOverhead = 128

// blob is one generated blob, hashed before any phase is timed.
type blob struct {
	data []byte
	d    digest.Digest
}

// span is a batch: the blobs at indices lo..hi-1 of a slice.
type span struct{ lo, hi int }

// syntheticAction is one action of the action-cache phases. Its Action and
// Command messages are uploaded (untimed) before the phases, as REAPI asks
// of clients that call UpdateActionResult.
type syntheticAction struct {
	digest digest.Digest
	result *repb.ActionResult
}

// workload is all the data of one run, generated up front so that the timed
// phases measure the server and the network, not the client's generator.
type workload struct {
	small []blob
	large []blob
	// findBatches and dataBatches split small into FindMissingBlobs and
	// BatchUpdateBlobs/BatchReadBlobs requests.
	findBatches []span
	dataBatches []span
	actions     []syntheticAction
	// actionBlobs are the serialized Action and Command messages of actions.
	actionBlobs []blob
}

// smallSizes returns n sizes drawn uniformly from [lo, hi] by a generator
// seeded with seed alone, so that runs with the same seed move the same
// amounts of data even though their content differs.
func smallSizes(seed uint64, n int, lo, hi int64) []int64 {
	r := rand.New(rand.NewPCG(seed, 0x6b696c6e62656e63)) // "kilnbenc"
	sizes := make([]int64, n)
	for i := range sizes {
		sizes[i] = lo + r.Int64N(hi-lo+1)
	}
	return sizes
}

// generateBlobs fills blobs of the given sizes with pseudo-random bytes and
// hashes them, on every core. The content of blob i is a key stream keyed
// by (seed, runID, kind, i): incompressible, reproducible for a run, and
// different in every run with a different runID.
func generateBlobs(ctx context.Context, seed uint64, runID, kind string, sizes []int64) ([]blob, error) {
	blobs := make([]blob, len(sizes))
	var next atomic.Int64
	g, ctx := errgroup.WithContext(ctx)
	for range runtime.GOMAXPROCS(0) {
		g.Go(func() error {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(blobs) {
					return nil
				}
				if err := rpcstatus.FromContext(ctx); err != nil {
					return err
				}
				data := make([]byte, sizes[i])
				fillRandom(data, blobKey(seed, runID, kind, i))
				blobs[i] = blob{data: data, d: digest.FromBytes(digest.SHA256, data)}
			}
		})
	}
	return blobs, g.Wait()
}

// fillRandom overwrites data with the AES-256-CTR key stream of key. AES-CTR
// runs several times faster than math/rand's ChaCha8 on CPUs with AES
// instructions, which matters when a run generates gigabytes; its output is
// just as incompressible. It is not used for secrecy.
func fillRandom(data []byte, key [32]byte) {
	clear(data)
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic(err) // cannot happen: the key has a valid length
	}
	cipher.NewCTR(block, make([]byte, aes.BlockSize)).XORKeyStream(data, data)
}

// blobKey derives the key of one blob's content.
func blobKey(seed uint64, runID, kind string, i int) [32]byte {
	h := sha256.New()
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], seed)
	binary.LittleEndian.PutUint64(b[8:], uint64(i))
	h.Write(b[:])
	h.Write([]byte(runID + "\x00" + kind))
	var key [32]byte
	h.Sum(key[:0])
	return key
}

// batchByCount splits n items into spans of at most size items.
func batchByCount(n, size int) []span {
	var out []span
	for lo := 0; lo < n; lo += size {
		out = append(out, span{lo, min(lo+size, n)})
	}
	return out
}

// batchByBytes splits blobs, in order, into spans whose content plus
// blobOverhead per blob stays within limit. Every blob must fit alone.
func batchByBytes(blobs []blob, limit int64) []span {
	var out []span
	lo, total := 0, int64(0)
	for i, b := range blobs {
		cost := int64(len(b.data)) + blobOverhead
		if i > lo && total+cost > limit {
			out = append(out, span{lo, i})
			lo, total = i, 0
		}
		total += cost
	}
	if lo < len(blobs) {
		out = append(out, span{lo, len(blobs)})
	}
	return out
}

// newActions builds n actions whose results refer to small blobs: action i
// has output file "out/{i}.o" with the content of small[i%len] and stdout
// small[(i+1)%len], so a server that checks that results are complete
// finds every blob. The Action's salt holds runID, making every action
// new to the server.
func newActions(n int, runID string, small []blob) ([]syntheticAction, []blob, error) {
	actions := make([]syntheticAction, n)
	var uploads []blob
	empty := digest.Empty(digest.SHA256) // the empty Directory: an empty input root
	opts := proto.MarshalOptions{Deterministic: true}
	for i := range actions {
		path := "out/" + strconv.Itoa(i) + ".o"
		cmd := &repb.Command{
			Arguments:   []string{"kiln-bench", "action", strconv.Itoa(i)},
			OutputPaths: []string{path},
		}
		cmdData, err := opts.Marshal(cmd)
		if err != nil {
			return nil, nil, err
		}
		cmdDigest := digest.FromBytes(digest.SHA256, cmdData)
		act := &repb.Action{
			CommandDigest:   cmdDigest.Proto(),
			InputRootDigest: empty.Proto(),
			Salt:            []byte("kiln-bench " + runID),
		}
		actData, err := opts.Marshal(act)
		if err != nil {
			return nil, nil, err
		}
		actDigest := digest.FromBytes(digest.SHA256, actData)
		uploads = append(uploads, blob{cmdData, cmdDigest}, blob{actData, actDigest})
		out, stdout := small[i%len(small)], small[(i+1)%len(small)]
		actions[i] = syntheticAction{
			digest: actDigest,
			result: &repb.ActionResult{
				OutputFiles:  []*repb.OutputFile{{Path: path, Digest: out.d.Proto()}},
				StdoutDigest: stdout.d.Proto(),
				ExecutionMetadata: &repb.ExecutedActionMetadata{
					Worker: "kiln-bench",
				},
			},
		}
	}
	return actions, uploads, nil
}
