package bench

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/internal/grpcaddr"
	"github.com/kiln-build/kiln/internal/rpcstatus"
)

// ExecConfig configures RunExec. DefaultExecConfig returns the defaults of
// "kiln bench exec"; starting from it and changing fields is the intended
// use.
type ExecConfig struct {
	// Server is the address to dial: grpc://host:port or host:port.
	// Ignored when Conn is set.
	Server string
	// Conn, if not nil, is used instead of dialing Server, for example an
	// in-memory connection in a test. RunExec does not close it.
	Conn grpc.ClientConnInterface
	// Instance is the REAPI instance name sent with every request.
	Instance string
	// Actions is the number of actions to execute, each exactly once.
	Actions int
	// Concurrency is the number of Execute calls in flight. It is an upper
	// bound on how many actions the server can run at once: set it above
	// the server's execution slots to keep them all busy and measure
	// queueing as well.
	Concurrency int
	// Sleep, if not zero, makes every command sleep that long before it
	// copies its input, so that overlap between actions shows: with S
	// execution slots a run takes about Actions*Sleep/S.
	Sleep time.Duration
	// Platform holds the platform properties of every action as
	// "name=value". RunExec sorts them as REAPI requires.
	Platform []string
	// RunID is mixed into every input file so that each run's actions are
	// new to the server. Empty means a random one. Reusing a run id turns
	// the actions into action cache hits, which the report counts.
	RunID string
	// JSON makes RunExec print one JSON summary at the end instead of a
	// human-readable report as it goes.
	JSON bool
}

// DefaultExecConfig returns the defaults of "kiln bench exec" for server.
func DefaultExecConfig(server string) ExecConfig {
	return ExecConfig{
		Server:      server,
		Actions:     500,
		Concurrency: 8,
	}
}

// execTimeout is the timeout of every action besides its sleep: generous,
// since the command itself takes milliseconds, and short enough that a
// stuck worker ends the run rather than hanging it.
const execTimeout = 60 * time.Second

// execBatchBytes caps one BatchUpdateBlobs request of the setup upload.
// The blobs are small; the server's max_batch_total_size_bytes lowers it.
const execBatchBytes = 2 << 20

// validate checks the configuration before anything is dialed and returns
// the parsed platform. Its errors name the setting the way the command line
// spells it.
func (cfg *ExecConfig) validate() (*repb.Platform, error) {
	switch {
	case cfg.Conn == nil && cfg.Server == "":
		return nil, fmt.Errorf("server: no address given")
	case cfg.Actions < 1:
		return nil, fmt.Errorf("actions %d: must be at least 1", cfg.Actions)
	case cfg.Concurrency < 1:
		return nil, fmt.Errorf("concurrency %d: must be at least 1", cfg.Concurrency)
	case cfg.Sleep < 0:
		return nil, fmt.Errorf("sleep %s: must not be negative", cfg.Sleep)
	}
	p, err := parsePlatform(cfg.Platform)
	if err != nil {
		return nil, err
	}
	return p, digest.ValidateInstanceName(cfg.Instance)
}

// execRun is the state of one RunExec call.
type execRun struct {
	cfg      ExecConfig
	platform *repb.Platform
	timeout  time.Duration // of every Action
	rep      *execReport
	cas      repb.ContentAddressableStorageClient
	exec     repb.ExecutionClient
	caps     repb.CapabilitiesClient
	limit    int64 // effective batch size limit of the upload
	w        execWorkload
	stats    execStats
}

// RunExec benchmarks remote execution on a REAPI server and writes a
// report to out. It asks the server for its capabilities and prints them,
// then, untimed, builds Actions actions (each with its own input file, so
// none can be an action cache hit) and uploads everything they need with
// FindMissingBlobs and BatchUpdateBlobs. Then it calls Execute for every
// action, Concurrency at a time, reading each Operation stream until the
// operation is done, and checks each result: status OK, exit code 0, and
// out.txt among the output files with the digest of the input it copies.
//
// The report gives actions per second over the timed part and, per action,
// the latency the client sees (total) next to what the server says in the
// result's ExecutedActionMetadata: command run time, queueing, input fetch,
// output upload and the overhead (total minus command). Cached results are
// counted, and should be zero.
//
// An RPC error or a failed check ends the run; the error keeps the gRPC
// code (server errors keep theirs; a wrong or missing output is DataLoss,
// a failed command or inconsistent answer Internal) and names the action
// by its index (from 0, as in its input file) and, unless the server's
// message already does, its Action digest. A failed run reports no figures.
func RunExec(ctx context.Context, cfg ExecConfig, out io.Writer) error {
	platform, err := cfg.validate()
	if err != nil {
		return err
	}
	conn, closeConn, err := connect(cfg.Conn, cfg.Server)
	if err != nil {
		return err
	}
	defer closeConn()
	if cfg.RunID == "" {
		cfg.RunID = newRunID()
	}
	r := &execRun{
		cfg:      cfg,
		platform: platform,
		timeout:  execTimeout + cfg.Sleep,
		rep:      newExecReport(cfg, platform, out),
		cas:      repb.NewContentAddressableStorageClient(conn),
		exec:     repb.NewExecutionClient(conn),
		caps:     repb.NewCapabilitiesClient(conn),
	}
	return r.rep.finish(r.run(ctx))
}

func (r *execRun) run(ctx context.Context) error {
	r.rep.start()
	if err := r.checkCapabilities(ctx); err != nil {
		return err
	}
	start := time.Now()
	w, err := newExecWorkload(r.cfg.Actions, r.cfg.RunID, r.cfg.Sleep, r.timeout, r.platform)
	if err != nil {
		return status.Errorf(codes.Internal, "build actions: %v", err)
	}
	r.w = w
	r.rep.prepared(w, r.timeout, time.Since(start))
	up, err := r.upload(ctx)
	if err != nil {
		return err
	}
	r.rep.uploaded(up)
	elapsed, err := r.executeAll(ctx)
	if err != nil {
		return err
	}
	r.rep.results(&r.stats, elapsed)
	return nil
}

// checkCapabilities asks the server what it supports, reports it, checks
// that it can execute SHA-256 actions, and sets the batch limit.
func (r *execRun) checkCapabilities(ctx context.Context) error {
	caps, err := r.caps.GetCapabilities(ctx, &repb.GetCapabilitiesRequest{InstanceName: r.cfg.Instance})
	if err != nil {
		return rpcstatus.Wrap(err, "GetCapabilities")
	}
	cc, ec := caps.GetCacheCapabilities(), caps.GetExecutionCapabilities()
	r.limit = min(execBatchBytes, grpcaddr.MaxMessageSize-batchMessageSlack)
	if m := cc.GetMaxBatchTotalSizeBytes(); m > 0 {
		r.limit = min(r.limit, m)
	}
	r.rep.capabilities(caps)
	if !ec.GetExecEnabled() {
		return status.Error(codes.FailedPrecondition, "GetCapabilities: the server does not execute actions (exec_enabled is false)")
	}
	if fns := cc.GetDigestFunctions(); len(fns) > 0 && !slices.Contains(fns, repb.DigestFunction_SHA256) {
		return status.Errorf(codes.FailedPrecondition, "GetCapabilities: the server's CAS supports digest functions %v, and this benchmark only SHA256", fns)
	}
	// execution_capabilities.digest_functions is new in REAPI 2.3; before,
	// the single digest_function said what Execute accepts.
	fns := ec.GetDigestFunctions()
	if len(fns) == 0 && ec.GetDigestFunction() != repb.DigestFunction_UNKNOWN {
		fns = []repb.DigestFunction_Value{ec.GetDigestFunction()}
	}
	if len(fns) > 0 && !slices.Contains(fns, repb.DigestFunction_SHA256) {
		return status.Errorf(codes.FailedPrecondition, "GetCapabilities: the server executes actions with digest functions %v, and this benchmark uses only SHA256", fns)
	}
	return nil
}

// executeAll executes every action once, with at most Concurrency Execute
// calls in flight, and records each result in r.stats. The first failure
// cancels the calls still running and is returned, naming its action. The
// elapsed time runs from the first call starting to the last one finishing.
func (r *execRun) executeAll(ctx context.Context) (time.Duration, error) {
	n := len(r.w.actions)
	var next atomic.Int64
	g, ctx := errgroup.WithContext(ctx)
	start := time.Now()
	for range min(r.cfg.Concurrency, n) {
		g.Go(func() error {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return nil
				}
				s, err := r.execute(ctx, i)
				if err != nil {
					// Calls cancelled because of this one fail later, and
					// errgroup keeps only the first error.
					d := r.w.actions[i].digest
					if strings.Contains(rpcstatus.FromError(err).Message(), d.Hash()) {
						return rpcstatus.Wrapf(err, "Execute: action %d", i) // the server named the digest
					}
					return rpcstatus.Wrapf(err, "Execute: action %d (%s)", i, d)
				}
				r.stats.record(s)
			}
		})
	}
	err := g.Wait()
	return time.Since(start), err
}
