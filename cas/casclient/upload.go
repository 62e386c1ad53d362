package casclient

import (
	"context"
	"errors"
	"io"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/internal/rpcstatus"
)

// Upload stores blobs in the CAS, each digest once (the first Blob given
// for a digest is sent). Blobs up to MaxSmallBlob are packed into
// BatchUpdateBlobs requests up to the batch limit; larger ones are streamed
// with ByteStream Write. The empty blob is never sent. The server verifies
// every blob against its digest.
func (c *Client) Upload(ctx context.Context, blobs []Blob) error {
	var small, large []Blob
	seen := make(map[digest.Digest]bool, len(blobs))
	for _, b := range blobs {
		if err := c.checkFunction(b.Digest); err != nil {
			return err
		}
		if seen[b.Digest] || b.Digest.IsEmpty() {
			continue
		}
		seen[b.Digest] = true
		if b.Digest.Size() <= c.maxSmall {
			small = append(small, b)
		} else {
			large = append(large, b)
		}
	}
	g, gctx := newGroup(ctx)
	for _, batch := range c.pack(len(small), func(i int) int64 { return small[i].Digest.Size() }) {
		g.Go(func() error { return c.batchUpdate(gctx, small[batch.start:batch.end]) })
	}
	for _, b := range large {
		g.Go(func() error { return c.write(gctx, b) })
	}
	return g.Wait()
}

// UploadMissing asks the CAS which of blobs it lacks and uploads those.
func (c *Client) UploadMissing(ctx context.Context, blobs []Blob) error {
	ds := make([]digest.Digest, len(blobs))
	for i, b := range blobs {
		ds[i] = b.Digest
	}
	missing, err := c.FindMissing(ctx, ds)
	if err != nil {
		return err
	}
	if len(missing) == 0 {
		return nil
	}
	want := make(map[digest.Digest]bool, len(missing))
	for _, d := range missing {
		want[d] = true
	}
	todo := make([]Blob, 0, len(missing))
	for _, b := range blobs {
		if want[b.Digest] {
			todo = append(todo, b)
			delete(want, b.Digest)
		}
	}
	return c.Upload(ctx, todo)
}

// UploadNew stores blobs that are probably new to the CAS, such as the
// outputs of an action that just ran. Blobs whose content is in memory
// (Data) and small enough for a batch are sent at once, without asking
// FindMissingBlobs first: the question costs a round trip, and sending a
// small blob the CAS already has costs about as much as asking about it.
// The others are asked about, concurrently, and only the missing ones are
// sent.
func (c *Client) UploadNew(ctx context.Context, blobs []Blob) error {
	var direct, ask []Blob
	for _, b := range blobs {
		if b.Path == "" && b.Digest.Size() <= c.maxSmall {
			direct = append(direct, b)
		} else {
			ask = append(ask, b)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	if len(direct) > 0 {
		g.Go(func() error { return c.Upload(gctx, direct) })
	}
	if len(ask) > 0 {
		g.Go(func() error { return c.UploadMissing(gctx, ask) })
	}
	return g.Wait()
}

// span is the index range [start, end) of one batch.
type span struct{ start, end int }

// pack splits n blobs of the given sizes, in order, into batches whose
// total size plus per-blob overhead stays within the batch limit. Every
// blob must be at most maxSmall.
func (c *Client) pack(n int, size func(i int) int64) []span {
	var out []span
	start, total := 0, int64(0)
	for i := 0; i < n; i++ {
		s := size(i) + batchOverhead
		if i > start && total+s > c.maxBatch {
			out = append(out, span{start, i})
			start, total = i, 0
		}
		total += s
	}
	if start < n {
		out = append(out, span{start, n})
	}
	return out
}

// batchUpdate sends blobs in one BatchUpdateBlobs request. Files are read
// only now, so at most `concurrency` batches are in memory at once.
func (c *Client) batchUpdate(ctx context.Context, blobs []Blob) error {
	req := &repb.BatchUpdateBlobsRequest{
		InstanceName:   c.instance,
		Requests:       make([]*repb.BatchUpdateBlobsRequest_Request, len(blobs)),
		DigestFunction: c.fn.Enum(),
	}
	for i, b := range blobs {
		data, err := b.bytes()
		if err != nil {
			return err
		}
		req.Requests[i] = &repb.BatchUpdateBlobsRequest_Request{Digest: b.Digest.Proto(), Data: data}
	}
	resp, err := c.cas.BatchUpdateBlobs(ctx, req)
	if err != nil {
		return rpcstatus.Wrapf(err, "upload %d blobs (first %s)", len(blobs), blobs[0].Digest)
	}
	if len(resp.GetResponses()) != len(blobs) {
		return status.Errorf(codes.Internal, "upload %d blobs (first %s): server answered %d statuses", len(blobs), blobs[0].Digest, len(resp.GetResponses()))
	}
	// Responses may come in any order: match them by digest.
	sent := make(map[string]digest.Digest, len(blobs))
	for _, b := range blobs {
		sent[b.Digest.Hash()] = b.Digest
	}
	for _, r := range resp.GetResponses() {
		if r.GetStatus().GetCode() == int32(codes.OK) {
			continue
		}
		name := r.GetDigest().GetHash()
		if d, ok := sent[name]; ok {
			name = d.String()
		}
		return rpcstatus.Wrapf(status.ErrorProto(r.GetStatus()), "upload blob %s", name)
	}
	return nil
}

// write streams one blob with ByteStream Write under a fresh upload id.
func (c *Client) write(ctx context.Context, b Blob) error {
	d := b.Digest
	src, err := b.open()
	if err != nil {
		return err
	}
	defer src.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream if we return early
	stream, err := c.bs.Write(ctx)
	if err != nil {
		return rpcstatus.Wrapf(err, "write blob %s", d)
	}
	res := digest.Resource{Instance: c.instance, UploadID: uuid.NewString(), Compressor: repb.Compressor_IDENTITY, Digest: d}
	buf := make([]byte, min(chunkSize, d.Size()))
	var off int64
	for off < d.Size() {
		n, err := io.ReadFull(src, buf[:min(int64(len(buf)), d.Size()-off)])
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return status.Errorf(codes.InvalidArgument, "write blob %s: %s ends after %d bytes", d, b.Path, off+int64(n))
			}
			return status.Errorf(codes.Internal, "write blob %s: read %s: %v", d, b.Path, err)
		}
		req := &bspb.WriteRequest{WriteOffset: off, Data: buf[:n], FinishWrite: off+int64(n) == d.Size()}
		if off == 0 {
			req.ResourceName = res.WriteName()
		}
		if err := stream.Send(req); err != nil {
			if err == io.EOF {
				// The server ended the stream early, for example because
				// it already has the blob; CloseAndRecv tells which.
				break
			}
			return rpcstatus.Wrapf(err, "write blob %s", d)
		}
		off += int64(n)
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return rpcstatus.Wrapf(err, "write blob %s", d)
	}
	if resp.GetCommittedSize() != d.Size() {
		return status.Errorf(codes.Internal, "write blob %s: server committed %d bytes", d, resp.GetCommittedSize())
	}
	return nil
}
