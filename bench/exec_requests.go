package bench

import (
	"context"
	"errors"
	"io"
	"slices"
	"strconv"
	"time"

	lrpb "cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/internal/rpcstatus"
)

// This file holds the requests of an exec run: the untimed upload of the
// actions' blobs, and the timed Execute of one action with the checks of
// its result.

// execFindMissingBatch is the number of digests per FindMissingBlobs
// request of the upload.
const execFindMissingBatch = 1000

// execUpload is what the untimed upload before the Execute calls did.
type execUpload struct {
	Blobs    int   // blobs the actions need
	Present  int   // of those, already in the CAS
	Uploaded int   // uploaded with BatchUpdateBlobs
	Bytes    int64 // content uploaded
	Requests int   // FindMissingBlobs and BatchUpdateBlobs requests
	Elapsed  time.Duration
}

// upload makes sure every blob of the workload is in the CAS: it asks
// FindMissingBlobs and uploads what is missing with BatchUpdateBlobs, at
// most Concurrency requests at a time. The Command may already be there
// from an earlier run with the same settings; nothing else should be.
func (r *execRun) upload(ctx context.Context) (execUpload, error) {
	start := time.Now()
	all := r.w.blobs
	finds := batchByCount(len(all), execFindMissingBatch)
	missing := make([][]blob, len(finds))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.cfg.Concurrency)
	for j, sp := range finds {
		g.Go(func() error {
			m, err := r.findMissing(gctx, all[sp.lo:sp.hi])
			missing[j] = m // each goroutine writes only its own slot
			return rpcstatus.Wrapf(err, "upload: FindMissingBlobs request %d of %d", j+1, len(finds))
		})
	}
	if err := g.Wait(); err != nil {
		return execUpload{}, err
	}
	todo := slices.Concat(missing...)
	batches := batchByBytes(todo, r.limit)
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(r.cfg.Concurrency)
	for j, sp := range batches {
		g.Go(func() error {
			err := r.batchUpdate(gctx, todo[sp.lo:sp.hi])
			return rpcstatus.Wrapf(err, "upload: BatchUpdateBlobs request %d of %d", j+1, len(batches))
		})
	}
	if err := g.Wait(); err != nil {
		return execUpload{}, err
	}
	up := execUpload{
		Blobs:    len(all),
		Present:  len(all) - len(todo),
		Uploaded: len(todo),
		Requests: len(finds) + len(batches),
		Elapsed:  time.Since(start),
	}
	for _, b := range todo {
		up.Bytes += int64(len(b.data))
	}
	return up, nil
}

// findMissing returns the blobs the server reports missing, in order.
func (r *execRun) findMissing(ctx context.Context, blobs []blob) ([]blob, error) {
	req := &repb.FindMissingBlobsRequest{
		InstanceName:   r.cfg.Instance,
		BlobDigests:    make([]*repb.Digest, len(blobs)),
		DigestFunction: repb.DigestFunction_SHA256,
	}
	for j, b := range blobs {
		req.BlobDigests[j] = b.d.Proto()
	}
	resp, err := r.cas.FindMissingBlobs(ctx, req)
	if err != nil {
		return nil, err
	}
	missing := make(map[digest.Digest]bool, len(resp.GetMissingBlobDigests()))
	for _, pb := range resp.GetMissingBlobDigests() {
		d, err := digest.FromProto(digest.SHA256, pb)
		if err != nil {
			return nil, rpcstatus.WrapWithCode(err, codes.Internal, "server answered with a malformed digest")
		}
		missing[d] = true
	}
	var out []blob
	for _, b := range blobs {
		if missing[b.d] {
			out = append(out, b)
			delete(missing, b.d) // a blob listed twice is uploaded once
		}
	}
	for d := range missing { // whatever is left was not asked about
		return nil, status.Errorf(codes.Internal, "server reports %s missing, which was not asked about", d)
	}
	return out, nil
}

// batchUpdate uploads blobs in one BatchUpdateBlobs request. Every blob
// must get exactly one OK response.
func (r *execRun) batchUpdate(ctx context.Context, blobs []blob) error {
	req := &repb.BatchUpdateBlobsRequest{
		InstanceName:   r.cfg.Instance,
		Requests:       make([]*repb.BatchUpdateBlobsRequest_Request, len(blobs)),
		DigestFunction: repb.DigestFunction_SHA256,
	}
	pending := make(map[digest.Digest]bool, len(blobs))
	for j, b := range blobs {
		req.Requests[j] = &repb.BatchUpdateBlobsRequest_Request{Digest: b.d.Proto(), Data: b.data}
		pending[b.d] = true
	}
	resp, err := r.cas.BatchUpdateBlobs(ctx, req)
	if err != nil {
		return err
	}
	for _, res := range resp.GetResponses() {
		d, err := digest.FromProto(digest.SHA256, res.GetDigest())
		if err != nil {
			return rpcstatus.WrapWithCode(err, codes.Internal, "server answered with a malformed digest")
		}
		if !pending[d] {
			return status.Errorf(codes.Internal, "server answered for blob %s, which was not in the request or was answered twice", d)
		}
		delete(pending, d)
		if err := blobError(res.GetStatus(), d); err != nil {
			return err
		}
	}
	if len(pending) > 0 {
		return status.Errorf(codes.Internal, "server did not answer for %d of %d blobs", len(pending), len(blobs))
	}
	return nil
}

// execSample is the measurement of one executed action.
type execSample struct {
	// total runs from the Execute call to the arrival of the final
	// Operation, on this client's clock.
	total  time.Duration
	cached bool
	// md is the server's account of the execution; its timestamps come
	// from the server's and the worker's clocks.
	md *repb.ExecutedActionMetadata
}

// execute executes action i, waits for its operation to finish and checks
// the result. Only the wait is timed: the checks come after.
func (r *execRun) execute(ctx context.Context, i int) (execSample, error) {
	a := r.w.actions[i]
	// Cancelling ends the stream should the server not close it after the
	// final Operation.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	op, err := r.awaitOperation(ctx, a)
	if err != nil {
		return execSample{}, err
	}
	total := time.Since(start)
	resp, err := executeResponse(op)
	if err != nil {
		return execSample{}, err
	}
	if err := r.checkResult(ctx, a, resp); err != nil {
		return execSample{}, rpcstatus.Wrapf(err, "operation %q", op.GetName())
	}
	return execSample{total: total, cached: resp.GetCachedResult(), md: resp.GetResult().GetExecutionMetadata()}, nil
}

// execMaxReconnects bounds how often one action's operation is resumed with
// WaitExecution after the server ended a stream before the operation was
// done, which REAPI allows it to do.
const execMaxReconnects = 5

// awaitOperation calls Execute for a and reads Operations until one is
// done, resuming with WaitExecution if the server ends the stream early.
func (r *execRun) awaitOperation(ctx context.Context, a execAction) (*lrpb.Operation, error) {
	stream, err := r.exec.Execute(ctx, &repb.ExecuteRequest{
		InstanceName:    r.cfg.Instance,
		ActionDigest:    a.digest.Proto(),
		SkipCacheLookup: false, // the actions are new, so a lookup must miss; cached results are counted
		DigestFunction:  repb.DigestFunction_SHA256,
	})
	if err != nil {
		return nil, err
	}
	var last *lrpb.Operation
	for reconnects := 0; ; reconnects++ {
		for {
			op, err := stream.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					if last != nil {
						return nil, rpcstatus.Wrapf(err, "operation %q", last.GetName())
					}
					return nil, err
				}
				break
			}
			if op.GetDone() {
				return op, nil
			}
			last = op
		}
		switch {
		case last == nil:
			return nil, status.Error(codes.Internal, "the server ended the Execute stream without sending an operation")
		case reconnects == execMaxReconnects:
			return nil, status.Errorf(codes.Unavailable, "operation %q: the server ended the stream %d times before the operation was done", last.GetName(), reconnects+1)
		}
		stream, err = r.exec.WaitExecution(ctx, &repb.WaitExecutionRequest{Name: last.GetName()})
		if err != nil {
			return nil, rpcstatus.Wrapf(err, "WaitExecution %q", last.GetName())
		}
	}
}

// executeResponse returns the ExecuteResponse of a done operation, or the
// error the operation ended with.
func executeResponse(op *lrpb.Operation) (*repb.ExecuteResponse, error) {
	if err := status.FromProto(op.GetError()).Err(); err != nil {
		return nil, rpcstatus.Wrapf(err, "operation %q", op.GetName())
	}
	if op.GetResponse() == nil {
		return nil, status.Errorf(codes.Internal, "operation %q is done without a response or an error", op.GetName())
	}
	resp := &repb.ExecuteResponse{}
	if err := op.GetResponse().UnmarshalTo(resp); err != nil {
		return nil, status.Errorf(codes.Internal, "operation %q: the response is not an ExecuteResponse: %v", op.GetName(), err)
	}
	return resp, nil
}

// checkResult checks that a's execution succeeded: status OK, exit code 0,
// and out.txt among the output files with the digest of in.txt, which the
// command copies. Comparing digests needs no read: the server computed the
// output's digest itself.
func (r *execRun) checkResult(ctx context.Context, a execAction, resp *repb.ExecuteResponse) error {
	if err := status.FromProto(resp.GetStatus()).Err(); err != nil {
		return rpcstatus.Wrap(err, "execution failed")
	}
	res := resp.GetResult()
	if res == nil {
		return status.Error(codes.Internal, "the response has status OK and no result")
	}
	if code := res.GetExitCode(); code != 0 {
		return status.Errorf(codes.Internal, "the command exited with code %d%s", code, r.stderrOf(ctx, res))
	}
	for _, f := range res.GetOutputFiles() {
		if f.GetPath() != execOutputName {
			continue
		}
		if !sameDigest(f.GetDigest(), a.input.Proto()) {
			return status.Errorf(codes.DataLoss, "output %s has digest %s/%d, want %s (the input it copies)",
				execOutputName, f.GetDigest().GetHash(), f.GetDigest().GetSizeBytes(), a.input)
		}
		return nil
	}
	return status.Errorf(codes.DataLoss, "output %s is not among the %d output files of the result", execOutputName, len(res.GetOutputFiles()))
}

// execStderrMax is the most of a failed command's stderr that an error
// quotes, and execStderrReadMax the largest stderr blob read for it.
const (
	execStderrMax     = 512
	execStderrReadMax = 64 << 10
)

// stderrOf returns the start of a result's stderr for an error message,
// as ": stderr ...", or "" if there is none or it can't be read. It is
// best effort: the error it decorates matters more.
func (r *execRun) stderrOf(ctx context.Context, res *repb.ActionResult) string {
	data := res.GetStderrRaw()
	if d := res.GetStderrDigest(); len(data) == 0 && d.GetSizeBytes() > 0 && d.GetSizeBytes() <= execStderrReadMax {
		resp, err := r.cas.BatchReadBlobs(ctx, &repb.BatchReadBlobsRequest{
			InstanceName:   r.cfg.Instance,
			Digests:        []*repb.Digest{d},
			DigestFunction: repb.DigestFunction_SHA256,
		})
		if err != nil || len(resp.GetResponses()) != 1 {
			return ""
		}
		data = resp.GetResponses()[0].GetData()
	}
	if len(data) == 0 {
		return ""
	}
	if len(data) > execStderrMax {
		data = append(data[:execStderrMax:execStderrMax], "…"...)
	}
	return ": stderr " + strconv.Quote(string(data))
}
