package bench

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/internal/grpcaddr"
	"github.com/kiln-build/kiln/internal/rpcstatus"
)

// CASConfig configures RunCAS. DefaultCASConfig returns the defaults of
// "kiln bench cas"; starting from it and changing fields is the intended
// use. A count of zero skips the phases that need those blobs or actions.
type CASConfig struct {
	// Server is the address to dial: grpc://host:port or host:port.
	// Ignored when Conn is set.
	Server string
	// Conn, if not nil, is used instead of dialing Server, for example an
	// in-memory connection in a test. RunCAS does not close it.
	Conn grpc.ClientConnInterface
	// Instance is the REAPI instance name sent with every request.
	Instance string
	// Concurrency is the number of requests in flight in each phase (the
	// ByteStream phases use at most LargeCount).
	Concurrency int

	// SmallCount blobs of SmallMin..SmallMax bytes (inclusive, uniformly
	// distributed) go through FindMissingBlobs, BatchUpdateBlobs and
	// BatchReadBlobs. SmallMin must be at least 1: the empty blob is
	// special in REAPI and always present.
	SmallCount int
	SmallMin   int64
	SmallMax   int64
	// LargeCount blobs of LargeSize bytes go through ByteStream Write and
	// Read.
	LargeCount int
	LargeSize  int64

	// BatchBytes caps the size of one BatchUpdateBlobs or BatchReadBlobs
	// request: blob content plus a fixed per-blob overhead. The server's
	// max_batch_total_size_bytes and kiln's gRPC message limit lower it if
	// they are smaller.
	BatchBytes int64
	// FindMissingBatch is the number of digests per FindMissingBlobs request.
	FindMissingBatch int
	// ChunkSize is the data size of each ByteStream WriteRequest.
	ChunkSize int
	// ActionCount synthetic actions go through UpdateActionResult and then
	// GetActionResult. Their results refer to small blobs, so SmallCount
	// must be at least 1 when ActionCount is not zero.
	ActionCount int

	// Seed seeds the sizes of the small blobs and, with RunID, their
	// content. Equal seeds give equal workloads in size.
	Seed uint64
	// RunID is mixed into all content so that each run uploads blobs the
	// server has not seen. Empty means a random one.
	RunID string
	// VerifyReads checks the content read back: BatchReadBlobs data is
	// compared with what was written and ByteStream reads are hashed with
	// SHA-256 as they arrive. The hashing runs in this process and counts
	// in the ByteStream.Read times. Lengths are always checked.
	VerifyReads bool
	// JSON makes RunCAS print one JSON summary at the end instead of a
	// human-readable report as it goes.
	JSON bool
}

// DefaultCASConfig returns the defaults of "kiln bench cas" for server.
func DefaultCASConfig(server string) CASConfig {
	return CASConfig{
		Server:           server,
		Concurrency:      8,
		SmallCount:       10000,
		SmallMin:         1 << 10,
		SmallMax:         64 << 10,
		LargeCount:       16,
		LargeSize:        64 << 20,
		BatchBytes:       2 << 20,
		FindMissingBatch: 1000,
		ChunkSize:        1 << 20,
		ActionCount:      1000,
		Seed:             1,
		VerifyReads:      true,
	}
}

// validate checks the configuration before anything is dialed. Its errors
// name the setting the way the command line spells it.
func (cfg *CASConfig) validate() error {
	switch {
	case cfg.Conn == nil && cfg.Server == "":
		return fmt.Errorf("server: no address given")
	case cfg.Concurrency < 1:
		return fmt.Errorf("concurrency %d: must be at least 1", cfg.Concurrency)
	case cfg.SmallCount < 0:
		return fmt.Errorf("small %d: must not be negative", cfg.SmallCount)
	case cfg.SmallMin < 1:
		return fmt.Errorf("small-min %d: must be at least 1 byte", cfg.SmallMin)
	case cfg.SmallMax < cfg.SmallMin:
		return fmt.Errorf("small-max %d: must not be below small-min %d", cfg.SmallMax, cfg.SmallMin)
	case cfg.LargeCount < 0:
		return fmt.Errorf("large %d: must not be negative", cfg.LargeCount)
	case cfg.LargeSize < 1:
		return fmt.Errorf("large-size %d: must be at least 1 byte", cfg.LargeSize)
	case cfg.BatchBytes < 1:
		return fmt.Errorf("batch-bytes %d: must be at least 1 byte", cfg.BatchBytes)
	case cfg.FindMissingBatch < 1:
		return fmt.Errorf("find-missing batch %d: must be at least 1", cfg.FindMissingBatch)
	case cfg.ChunkSize < 1:
		return fmt.Errorf("chunk size %d: must be at least 1 byte", cfg.ChunkSize)
	case cfg.ActionCount < 0:
		return fmt.Errorf("actions %d: must not be negative", cfg.ActionCount)
	case cfg.ActionCount > 0 && cfg.SmallCount == 0:
		return fmt.Errorf("actions %d: need at least one small blob for the results to refer to", cfg.ActionCount)
	}
	return digest.ValidateInstanceName(cfg.Instance)
}

// Phase names, in the order the phases run.
const (
	phaseFindCold    = "FindMissingBlobs/cold"
	phaseBatchUpdate = "BatchUpdateBlobs"
	phaseFindWarm    = "FindMissingBlobs/warm"
	phaseBatchRead   = "BatchReadBlobs"
	phaseWrite       = "ByteStream.Write"
	phaseRead        = "ByteStream.Read"
	phaseUpdateAC    = "UpdateActionResult"
	phaseGetAC       = "GetActionResult"
)

// batchMessageSlack is kept free below grpcaddr.MaxMessageSize in a batch
// so that the request fits in one gRPC message.
const batchMessageSlack = 64 << 10

// casRun is the state of one RunCAS call.
type casRun struct {
	cfg   CASConfig
	rep   *report
	cas   repb.ContentAddressableStorageClient
	bs    bspb.ByteStreamClient
	ac    repb.ActionCacheClient
	caps  repb.CapabilitiesClient
	limit int64 // effective batch size limit
	w     workload
}

// RunCAS benchmarks the CAS, ByteStream and action cache of a REAPI server
// and writes a report to out. It first asks the server for its
// capabilities and prints them, then generates and hashes all blobs
// (untimed, on every core), then runs these phases in order:
//
//  1. FindMissingBlobs of every small blob: all must be missing.
//  2. BatchUpdateBlobs of every small blob: every per-blob status must be OK.
//  3. FindMissingBlobs again: none may be missing.
//  4. BatchReadBlobs of every small blob, compared with what was written.
//  5. ByteStream Write of the large blobs, in ChunkSize chunks.
//  6. ByteStream Read of the large blobs, checking length and SHA-256.
//  7. UpdateActionResult, then GetActionResult, of ActionCount synthetic
//     actions whose results refer to small blobs.
//
// An RPC error or a failed check ends the run; the error keeps the gRPC
// code (server errors keep theirs; wrong content is DataLoss, inconsistent
// answers are Internal) and names the phase, request and blob. Phases that
// completed are still reported. The server keeps what was uploaded.
func RunCAS(ctx context.Context, cfg CASConfig, out io.Writer) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	// Large flow-control windows, as kiln's server uses: otherwise a
	// single connection limits large-blob throughput on fast links.
	conn, closeConn, err := connect(cfg.Conn, cfg.Server,
		grpc.WithInitialWindowSize(4<<20),
		grpc.WithInitialConnWindowSize(16<<20),
		grpc.WithReadBufferSize(256<<10),
		grpc.WithWriteBufferSize(256<<10))
	if err != nil {
		return err
	}
	defer closeConn()
	if cfg.RunID == "" {
		cfg.RunID = newRunID()
	}
	r := &casRun{
		cfg:  cfg,
		rep:  newReport(cfg, out),
		cas:  repb.NewContentAddressableStorageClient(conn),
		bs:   bspb.NewByteStreamClient(conn),
		ac:   repb.NewActionCacheClient(conn),
		caps: repb.NewCapabilitiesClient(conn),
	}
	return r.rep.finish(r.run(ctx))
}

func (r *casRun) run(ctx context.Context) error {
	r.rep.start()
	acUpdates, err := r.checkCapabilities(ctx)
	if err != nil {
		return err
	}
	if err := r.prepare(ctx); err != nil {
		return err
	}
	r.rep.tableHeader()
	w, workers := &r.w, r.cfg.Concurrency
	if r.cfg.SmallCount > 0 {
		phases := []struct {
			name    string
			batches []span
			do      requestFunc
		}{
			{phaseFindCold, w.findBatches, r.findMissing(true)},
			{phaseBatchUpdate, w.dataBatches, r.batchUpdate(w.small, w.dataBatches)},
			{phaseFindWarm, w.findBatches, r.findMissing(false)},
			{phaseBatchRead, w.dataBatches, r.batchRead},
		}
		for _, p := range phases {
			if err := r.phase(ctx, p.name, len(p.batches), workers, p.do); err != nil {
				return err
			}
		}
	}
	if r.cfg.LargeCount > 0 {
		if err := r.phase(ctx, phaseWrite, len(w.large), workers, r.byteStreamWrite); err != nil {
			return err
		}
		if err := r.phase(ctx, phaseRead, len(w.large), workers, r.byteStreamRead); err != nil {
			return err
		}
	}
	if r.cfg.ActionCount > 0 {
		if !acUpdates {
			const why = "the server does not allow action cache updates from clients"
			r.rep.phase(phaseResult{Name: phaseUpdateAC, Skipped: why})
			r.rep.phase(phaseResult{Name: phaseGetAC, Skipped: why})
			return nil
		}
		// REAPI asks clients to upload the Action and its Command before
		// UpdateActionResult. That is setup, not part of any phase.
		batches := batchByBytes(w.actionBlobs, r.limit)
		if _, err := runPhase(ctx, "upload of Action and Command messages", len(batches), workers, r.batchUpdate(w.actionBlobs, batches)); err != nil {
			return err
		}
		if err := r.phase(ctx, phaseUpdateAC, len(w.actions), workers, r.updateActionResult); err != nil {
			return err
		}
		if err := r.phase(ctx, phaseGetAC, len(w.actions), workers, r.getActionResult); err != nil {
			return err
		}
	}
	return nil
}

// phase runs one phase and reports it if it succeeded. A failed phase is
// not reported: its numbers would mix requests that failed or were cut short.
func (r *casRun) phase(ctx context.Context, name string, n, workers int, do requestFunc) error {
	res, err := runPhase(ctx, name, n, workers, do)
	if err == nil {
		r.rep.phase(res)
	}
	return err
}

// checkCapabilities asks the server what it supports, reports it, checks
// that this run fits, and sets the batch limit. It reports whether the
// server lets clients update the action cache.
func (r *casRun) checkCapabilities(ctx context.Context) (acUpdates bool, err error) {
	caps, err := r.caps.GetCapabilities(ctx, &repb.GetCapabilitiesRequest{InstanceName: r.cfg.Instance})
	if err != nil {
		return false, rpcstatus.Wrap(err, "GetCapabilities")
	}
	cc := caps.GetCacheCapabilities()
	r.limit = min(r.cfg.BatchBytes, grpcaddr.MaxMessageSize-batchMessageSlack)
	if m := cc.GetMaxBatchTotalSizeBytes(); m > 0 {
		r.limit = min(r.limit, m)
	}
	r.rep.capabilities(caps, r.limit)
	if cc == nil {
		return false, status.Error(codes.FailedPrecondition, "GetCapabilities: the server advertises no cache capabilities")
	}
	if fns := cc.GetDigestFunctions(); len(fns) > 0 && !slices.Contains(fns, repb.DigestFunction_SHA256) {
		return false, status.Errorf(codes.FailedPrecondition, "GetCapabilities: the server supports digest functions %v, and this benchmark only SHA256", fns)
	}
	if m := cc.GetMaxCasBlobSizeBytes(); m > 0 {
		if r.cfg.LargeCount > 0 && r.cfg.LargeSize > m {
			return false, status.Errorf(codes.FailedPrecondition, "large-size %d: above the server's max_cas_blob_size_bytes %d", r.cfg.LargeSize, m)
		}
		if r.cfg.SmallCount > 0 && r.cfg.SmallMax > m {
			return false, status.Errorf(codes.FailedPrecondition, "small-max %d: above the server's max_cas_blob_size_bytes %d", r.cfg.SmallMax, m)
		}
	}
	if r.cfg.SmallCount > 0 && r.cfg.SmallMax+blobOverhead > r.limit {
		return false, status.Errorf(codes.FailedPrecondition, "small-max %d: a blob of that size does not fit in a batch of at most %d bytes (including %d bytes of overhead per blob)", r.cfg.SmallMax, r.limit, blobOverhead)
	}
	return cc.GetActionCacheUpdateCapabilities().GetUpdateEnabled(), nil
}

// prepare generates, hashes and batches all data of the run.
func (r *casRun) prepare(ctx context.Context) error {
	start := time.Now()
	cfg := r.cfg
	var err error
	sizes := smallSizes(cfg.Seed, cfg.SmallCount, cfg.SmallMin, cfg.SmallMax)
	if r.w.small, err = generateBlobs(ctx, cfg.Seed, cfg.RunID, "small", sizes); err != nil {
		return err
	}
	sizes = make([]int64, cfg.LargeCount)
	for i := range sizes {
		sizes[i] = cfg.LargeSize
	}
	if r.w.large, err = generateBlobs(ctx, cfg.Seed, cfg.RunID, "large", sizes); err != nil {
		return err
	}
	r.w.findBatches = batchByCount(len(r.w.small), cfg.FindMissingBatch)
	r.w.dataBatches = batchByBytes(r.w.small, r.limit)
	if cfg.ActionCount > 0 {
		if r.w.actions, r.w.actionBlobs, err = newActions(cfg.ActionCount, cfg.RunID, r.w.small); err != nil {
			return status.Errorf(codes.Internal, "build synthetic actions: %v", err)
		}
	}
	var small, large int64
	for _, b := range r.w.small {
		small += int64(len(b.data))
	}
	for _, b := range r.w.large {
		large += int64(len(b.data))
	}
	r.rep.prepared(time.Since(start), small, small+large, len(r.w.dataBatches), len(r.w.findBatches))
	return nil
}
