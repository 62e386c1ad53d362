package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/google/uuid"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/internal/rpcstatus"
)

// This file holds one function per kind of request. Each performs a single
// request of a phase and checks the answer; checks are part of the timed
// request, so they are kept cheap except where the config asks for hashing.

// findMissing returns the request of the FindMissingBlobs phases. Before
// the upload (cold) every digest must come back missing, since the run id
// makes them new; after it, none may.
func (r *casRun) findMissing(cold bool) requestFunc {
	return func(ctx context.Context, i int) (int, int64, error) {
		sp := r.w.findBatches[i]
		blobs := r.w.small[sp.lo:sp.hi]
		req := &repb.FindMissingBlobsRequest{
			InstanceName: r.cfg.Instance,
			BlobDigests:  make([]*repb.Digest, len(blobs)),
		}
		asked := make(map[digest.Digest]bool, len(blobs))
		for j, b := range blobs {
			req.BlobDigests[j] = b.d.Proto()
			asked[b.d] = true
		}
		resp, err := r.cas.FindMissingBlobs(ctx, req)
		if err != nil {
			return 0, 0, err
		}
		missing := make(map[digest.Digest]bool, len(resp.GetMissingBlobDigests()))
		for _, pb := range resp.GetMissingBlobDigests() {
			d, err := digest.FromProto(digest.SHA256, pb)
			if err != nil {
				return 0, 0, rpcstatus.WrapWithCode(err, codes.Internal, "server answered with a malformed digest")
			}
			if !asked[d] {
				return 0, 0, status.Errorf(codes.Internal, "server reports %s missing, which was not asked about", d)
			}
			missing[d] = true
		}
		switch {
		case cold && len(missing) != len(blobs):
			for _, b := range blobs {
				if !missing[b.d] {
					return 0, 0, status.Errorf(codes.Internal, "server reports %d of %d blobs present that were never uploaded, such as %s", len(blobs)-len(missing), len(blobs), b.d)
				}
			}
		case !cold && len(missing) != 0:
			for _, b := range blobs {
				if missing[b.d] {
					return 0, 0, status.Errorf(codes.NotFound, "server reports %d of %d blobs missing that BatchUpdateBlobs stored, such as %s", len(missing), len(blobs), b.d)
				}
			}
		}
		return len(blobs), 0, nil
	}
}

// batchUpdate returns the request that uploads blobs in the given batches
// with BatchUpdateBlobs. Every blob must get exactly one OK response.
func (r *casRun) batchUpdate(all []blob, batches []span) requestFunc {
	return func(ctx context.Context, i int) (int, int64, error) {
		sp := batches[i]
		blobs := all[sp.lo:sp.hi]
		req := &repb.BatchUpdateBlobsRequest{
			InstanceName: r.cfg.Instance,
			Requests:     make([]*repb.BatchUpdateBlobsRequest_Request, len(blobs)),
		}
		pending := make(map[digest.Digest]bool, len(blobs))
		var n int64
		for j, b := range blobs {
			req.Requests[j] = &repb.BatchUpdateBlobsRequest_Request{Digest: b.d.Proto(), Data: b.data}
			pending[b.d] = true
			n += int64(len(b.data))
		}
		resp, err := r.cas.BatchUpdateBlobs(ctx, req)
		if err != nil {
			return 0, 0, err
		}
		for _, res := range resp.GetResponses() {
			d, err := digest.FromProto(digest.SHA256, res.GetDigest())
			if err != nil {
				return 0, 0, rpcstatus.WrapWithCode(err, codes.Internal, "server answered with a malformed digest")
			}
			if !pending[d] {
				return 0, 0, status.Errorf(codes.Internal, "server answered for blob %s, which was not in the request or was answered twice", d)
			}
			delete(pending, d)
			if err := blobError(res.GetStatus(), d); err != nil {
				return 0, 0, err
			}
		}
		if len(pending) > 0 {
			return 0, 0, status.Errorf(codes.Internal, "server did not answer for %d of %d blobs", len(pending), len(blobs))
		}
		return len(blobs), n, nil
	}
}

// batchRead reads one batch of small blobs with BatchReadBlobs and checks
// that each comes back once, with its length and, if VerifyReads, its bytes.
func (r *casRun) batchRead(ctx context.Context, i int) (int, int64, error) {
	sp := r.w.dataBatches[i]
	blobs := r.w.small[sp.lo:sp.hi]
	req := &repb.BatchReadBlobsRequest{
		InstanceName: r.cfg.Instance,
		Digests:      make([]*repb.Digest, len(blobs)),
	}
	pending := make(map[digest.Digest][]byte, len(blobs))
	for j, b := range blobs {
		req.Digests[j] = b.d.Proto()
		pending[b.d] = b.data
	}
	resp, err := r.cas.BatchReadBlobs(ctx, req)
	if err != nil {
		return 0, 0, err
	}
	var n int64
	for _, res := range resp.GetResponses() {
		d, err := digest.FromProto(digest.SHA256, res.GetDigest())
		if err != nil {
			return 0, 0, rpcstatus.WrapWithCode(err, codes.Internal, "server answered with a malformed digest")
		}
		want, ok := pending[d]
		if !ok {
			return 0, 0, status.Errorf(codes.Internal, "server answered for blob %s, which was not in the request or was answered twice", d)
		}
		delete(pending, d)
		if err := blobError(res.GetStatus(), d); err != nil {
			return 0, 0, err
		}
		if c := res.GetCompressor(); c != repb.Compressor_IDENTITY {
			return 0, 0, status.Errorf(codes.Internal, "blob %s: server sent %s data, which was not asked for", d, c)
		}
		got := res.GetData()
		if len(got) != len(want) {
			return 0, 0, status.Errorf(codes.DataLoss, "blob %s: server sent %d bytes", d, len(got))
		}
		if r.cfg.VerifyReads && !bytes.Equal(got, want) {
			return 0, 0, status.Errorf(codes.DataLoss, "blob %s: server sent content that differs from what was written", d)
		}
		n += int64(len(got))
	}
	if len(pending) > 0 {
		return 0, 0, status.Errorf(codes.Internal, "server did not answer for %d of %d blobs", len(pending), len(blobs))
	}
	return len(blobs), n, nil
}

// byteStreamWrite uploads large blob i with one ByteStream Write under a
// fresh upload id, in ChunkSize pieces, and checks the committed size.
func (r *casRun) byteStreamWrite(ctx context.Context, i int) (int, int64, error) {
	b := r.w.large[i]
	name := digest.Resource{Instance: r.cfg.Instance, UploadID: uuid.NewString(), Digest: b.d}.WriteName()
	ctx, cancel := context.WithCancel(ctx) // ends the stream on early return
	defer cancel()
	stream, err := r.bs.Write(ctx)
	if err != nil {
		return 0, 0, rpcstatus.Wrapf(err, "write %s", name)
	}
	size := int64(len(b.data))
	for off := int64(0); off < size; {
		end := min(off+int64(r.cfg.ChunkSize), size)
		req := &bspb.WriteRequest{WriteOffset: off, Data: b.data[off:end], FinishWrite: end == size}
		if off == 0 {
			req.ResourceName = name
		}
		if err := stream.Send(req); err != nil {
			if errors.Is(err, io.EOF) {
				// The server ended the stream early: either the blob
				// already exists or it failed. CloseAndRecv tells which.
				break
			}
			return 0, 0, rpcstatus.Wrapf(err, "write %s at offset %d", name, off)
		}
		off = end
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return 0, 0, rpcstatus.Wrapf(err, "write %s", name)
	}
	if c := resp.GetCommittedSize(); c != size {
		return 0, 0, status.Errorf(codes.Internal, "write %s: server committed %d bytes, want %d", name, c, size)
	}
	return 1, size, nil
}

// byteStreamRead downloads large blob i with one ByteStream Read and checks
// its length and, if VerifyReads, its SHA-256 as the data arrives.
func (r *casRun) byteStreamRead(ctx context.Context, i int) (int, int64, error) {
	b := r.w.large[i]
	name := digest.Resource{Instance: r.cfg.Instance, Digest: b.d}.ReadName()
	ctx, cancel := context.WithCancel(ctx) // ends the stream on early return
	defer cancel()
	stream, err := r.bs.Read(ctx, &bspb.ReadRequest{ResourceName: name})
	if err != nil {
		return 0, 0, rpcstatus.Wrapf(err, "read %s", name)
	}
	h := sha256.New()
	var n int64
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, 0, rpcstatus.Wrapf(err, "read %s at offset %d", name, n)
		}
		data := resp.GetData()
		n += int64(len(data))
		if n > b.d.Size() {
			return 0, 0, status.Errorf(codes.DataLoss, "read %s: server sent more than %d bytes", name, b.d.Size())
		}
		if r.cfg.VerifyReads {
			h.Write(data)
		}
	}
	if n != b.d.Size() {
		return 0, 0, status.Errorf(codes.DataLoss, "read %s: server sent %d bytes, want %d", name, n, b.d.Size())
	}
	if r.cfg.VerifyReads && !bytes.Equal(h.Sum(nil), b.d.RawHash()) {
		return 0, 0, status.Errorf(codes.DataLoss, "read %s: content does not match its SHA-256", name)
	}
	return 1, n, nil
}

// updateActionResult stores the result of synthetic action i.
func (r *casRun) updateActionResult(ctx context.Context, i int) (int, int64, error) {
	a := r.w.actions[i]
	_, err := r.ac.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{
		InstanceName: r.cfg.Instance,
		ActionDigest: a.digest.Proto(),
		ActionResult: a.result,
	})
	if err != nil {
		return 0, 0, rpcstatus.Wrapf(err, "action %s", a.digest)
	}
	return 0, 0, nil
}

// getActionResult fetches the result of synthetic action i and checks that
// it names the same output file and stdout that were stored.
func (r *casRun) getActionResult(ctx context.Context, i int) (int, int64, error) {
	a := r.w.actions[i]
	got, err := r.ac.GetActionResult(ctx, &repb.GetActionResultRequest{
		InstanceName: r.cfg.Instance,
		ActionDigest: a.digest.Proto(),
	})
	if err != nil {
		return 0, 0, rpcstatus.Wrapf(err, "action %s", a.digest)
	}
	want := a.result
	wantFile := want.OutputFiles[0]
	ok := len(got.GetOutputFiles()) == 1 &&
		got.OutputFiles[0].GetPath() == wantFile.Path &&
		sameDigest(got.OutputFiles[0].GetDigest(), wantFile.Digest) &&
		sameDigest(got.GetStdoutDigest(), want.StdoutDigest)
	if !ok {
		return 0, 0, status.Errorf(codes.DataLoss, "action %s: server returned a result that differs from the one stored", a.digest)
	}
	return 0, 0, nil
}

// blobError turns the per-blob status of a batch response into an error
// that names the blob, unless the server's message already does.
func blobError(st *spb.Status, d digest.Digest) error {
	err := status.FromProto(st).Err()
	if err == nil || strings.Contains(st.GetMessage(), d.Hash()) {
		return err
	}
	return rpcstatus.Wrapf(err, "blob %s", d)
}

func sameDigest(a, b *repb.Digest) bool {
	return a.GetHash() == b.GetHash() && a.GetSizeBytes() == b.GetSizeBytes()
}
