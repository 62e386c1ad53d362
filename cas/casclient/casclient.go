// Package casclient is a small client of a REAPI CAS: FindMissingBlobs,
// batch and ByteStream uploads and downloads, and GetTree.
//
// Small blobs travel in BatchUpdateBlobs and BatchReadBlobs requests packed
// up to the server's batch limit; large ones through ByteStream, streamed
// from and to files so that a blob of any size costs a fixed amount of
// memory. Every byte read is checked against its digest before it is
// handed out or published under its final name.
//
// Errors are gRPC statuses. They keep the code the server sent and name the
// digest involved, as in "read blob 3a7f…/142: not found".
package casclient

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"sync"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sync/errgroup"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/internal/grpcaddr"
	"github.com/kiln-build/kiln/internal/rpcstatus"
)

const (
	// DefaultMaxBatchBytes is the batch limit used when the server
	// announces none (0): gRPC's default message size limit, which every
	// server accepts.
	DefaultMaxBatchBytes = 4 << 20

	// MaxSmallBlob is the largest blob sent or read in a batch request.
	// Larger blobs go through ByteStream even when the batch limit would
	// allow them, so that one batch never holds a few huge blobs that
	// would be better streamed.
	MaxSmallBlob = 1 << 20

	// batchOverhead is what each blob adds to a batch request beyond its
	// data: the digest, the per-entry framing and, in responses, a status.
	batchOverhead = 256

	// chunkSize is the data size of each ByteStream WriteRequest.
	chunkSize = 256 << 10

	// findMissingChunk is the number of digests in one FindMissingBlobs
	// request, about 1 MB on the wire.
	findMissingChunk = 10000

	// concurrency bounds the requests in flight for one call.
	concurrency = 8
)

// Client talks to the CAS of one instance with one digest function. It is
// safe for concurrent use.
type Client struct {
	cas      repb.ContentAddressableStorageClient
	bs       bspb.ByteStreamClient
	instance string
	fn       digest.Function
	// maxBatch is the total size of a batch request, overhead included.
	maxBatch int64
	// maxSmall is the largest blob that goes in a batch.
	maxSmall int64
}

// New returns a client of the CAS reached through conn. maxBatchBytes is
// the server's max_batch_total_size_bytes (see FetchCapabilities); 0 means
// the server sets no limit, and DefaultMaxBatchBytes is used. Limits above
// kiln's gRPC message size are lowered to it.
func New(conn grpc.ClientConnInterface, instance string, fn digest.Function, maxBatchBytes int64) *Client {
	if maxBatchBytes <= 0 {
		maxBatchBytes = DefaultMaxBatchBytes
	}
	maxBatchBytes = min(maxBatchBytes, grpcaddr.MaxMessageSize)
	return &Client{
		cas:      repb.NewContentAddressableStorageClient(conn),
		bs:       bspb.NewByteStreamClient(conn),
		instance: instance,
		fn:       fn,
		maxBatch: maxBatchBytes,
		maxSmall: max(0, min(MaxSmallBlob, maxBatchBytes-batchOverhead)),
	}
}

// FetchCapabilities asks the server at conn for its capabilities. The batch
// limit for New is GetCacheCapabilities().GetMaxBatchTotalSizeBytes().
func FetchCapabilities(ctx context.Context, conn grpc.ClientConnInterface, instance string) (*repb.ServerCapabilities, error) {
	caps, err := repb.NewCapabilitiesClient(conn).GetCapabilities(ctx, &repb.GetCapabilitiesRequest{InstanceName: instance})
	if err != nil {
		return nil, rpcstatus.Wrapf(err, "get capabilities of instance %q", instance)
	}
	return caps, nil
}

// Instance returns the instance name the client uses.
func (c *Client) Instance() string { return c.instance }

// Function returns the client's digest function.
func (c *Client) Function() digest.Function { return c.fn }

// MaxBatchBytes returns the total size of one batch request, per-blob
// overhead included: what BatchRead and Upload pack requests up to.
func (c *Client) MaxBatchBytes() int64 { return c.maxBatch }

// MaxBatchBlob returns the size of the largest blob that BatchRead and
// Upload send in a batch request; larger ones go through ByteStream.
func (c *Client) MaxBatchBlob() int64 { return c.maxSmall }

// checkFunction rejects a digest of another function than the client's: it
// would be sent under the wrong digest_function.
func (c *Client) checkFunction(d digest.Digest) error {
	if d.IsZero() {
		return status.Error(codes.InvalidArgument, "digest is the zero value")
	}
	if d.Function().Enum() != c.fn.Enum() {
		return status.Errorf(codes.InvalidArgument, "blob %s: digest function %s, but the client uses %s", d, d.Function().Name(), c.fn.Name())
	}
	return nil
}

// FindMissing returns the digests of ds that the CAS lacks, each once, in
// the order of their first appearance in ds. The empty blob is never
// missing: every REAPI server must treat it as present.
func (c *Client) FindMissing(ctx context.Context, ds []digest.Digest) ([]digest.Digest, error) {
	uniq := make([]digest.Digest, 0, len(ds))
	seen := make(map[digest.Digest]bool, len(ds))
	for _, d := range ds {
		if err := c.checkFunction(d); err != nil {
			return nil, err
		}
		if !seen[d] && !d.IsEmpty() {
			seen[d] = true
			uniq = append(uniq, d)
		}
	}
	var mu sync.Mutex
	missing := make(map[digest.Digest]bool)
	g, gctx := newGroup(ctx)
	for start := 0; start < len(uniq); start += findMissingChunk {
		part := uniq[start:min(start+findMissingChunk, len(uniq))]
		g.Go(func() error {
			req := &repb.FindMissingBlobsRequest{
				InstanceName:   c.instance,
				BlobDigests:    make([]*repb.Digest, len(part)),
				DigestFunction: c.fn.Enum(),
			}
			for i, d := range part {
				req.BlobDigests[i] = d.Proto()
			}
			resp, err := c.cas.FindMissingBlobs(gctx, req)
			if err != nil {
				return rpcstatus.Wrapf(err, "find missing blobs (%d digests, first %s)", len(part), part[0])
			}
			mu.Lock()
			defer mu.Unlock()
			for _, pb := range resp.GetMissingBlobDigests() {
				d, err := digest.FromProto(c.fn, pb)
				if err != nil {
					return rpcstatus.WrapWithCode(err, codes.Internal, "find missing blobs: server answered a bad digest")
				}
				missing[d] = true
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out := make([]digest.Digest, 0, len(missing))
	for _, d := range uniq {
		if missing[d] {
			out = append(out, d)
		}
	}
	return out, nil
}

// Blob is a blob to upload: its digest and either its bytes or the path of
// a file holding them.
type Blob struct {
	Digest digest.Digest
	// Data is the content when Path is empty.
	Data []byte
	// Path names a file whose content hashes to Digest. It is read when
	// the blob is sent, never all at once when it is large.
	Path string
}

// open returns a reader of the blob's content.
func (b Blob) open() (io.ReadCloser, error) {
	if b.Path == "" {
		if int64(len(b.Data)) != b.Digest.Size() {
			return nil, status.Errorf(codes.InvalidArgument, "blob %s: %d bytes of data", b.Digest, len(b.Data))
		}
		return io.NopCloser(bytes.NewReader(b.Data)), nil
	}
	f, err := os.Open(b.Path)
	if err != nil {
		return nil, fileError(err, "blob %s: open %s", b.Digest, b.Path)
	}
	return f, nil
}

// bytes returns the blob's content in memory, for batch requests.
func (b Blob) bytes() ([]byte, error) {
	if b.Path == "" {
		if int64(len(b.Data)) != b.Digest.Size() {
			return nil, status.Errorf(codes.InvalidArgument, "blob %s: %d bytes of data", b.Digest, len(b.Data))
		}
		return b.Data, nil
	}
	data, err := os.ReadFile(b.Path)
	if err != nil {
		return nil, fileError(err, "blob %s: read %s", b.Digest, b.Path)
	}
	if int64(len(data)) != b.Digest.Size() {
		return nil, status.Errorf(codes.InvalidArgument, "blob %s: file %s has %d bytes", b.Digest, b.Path, len(data))
	}
	return data, nil
}

// fileError classifies a local file error: a missing file is the caller's
// mistake (InvalidArgument), anything else is Internal.
func fileError(err error, format string, args ...any) error {
	code := codes.Internal
	if os.IsNotExist(err) {
		code = codes.InvalidArgument
	}
	return status.Errorf(code, "%s: %v", fmt.Sprintf(format, args...), err)
}

// newGroup returns an error group bounded to the client's concurrency.
func newGroup(ctx context.Context) (*errgroup.Group, context.Context) {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(concurrency)
	return g, gctx
}
