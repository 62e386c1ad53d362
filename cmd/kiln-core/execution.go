package main

import (
	"context"
	"log/slog"
	"math"
	"path/filepath"
	"sync"
	"time"

	lrpb "cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/google/uuid"
	"google.golang.org/grpc"

	"github.com/kiln-build/kiln/api/workerpb"
	"github.com/kiln-build/kiln/cas"
	"github.com/kiln-build/kiln/cas/actioncache"
	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/execution"
	"github.com/kiln-build/kiln/internal/grpcaddr"
	"github.com/kiln-build/kiln/scheduler"
	"github.com/kiln-build/kiln/worker"
)

// heartbeatInterval is how often workers report; WorkerTimeout should be a
// few of these.
const heartbeatInterval = 5 * time.Second

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// executionServer is the remote-execution half of the server: scheduler,
// its timer, the services, and the in-process worker. Its goroutines stop
// in stop().
type executionServer struct {
	s     serverSettings
	sched *scheduler.Scheduler
	log   *slog.Logger
	cache *actioncache.Cache
	blobs cas.BlobStore

	exec    *execution.Service
	workers *execution.Workers
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// newExecutionServer starts the scheduler's timer and, unless disabled,
// the in-process worker, which dials grpcAddr (it retries until the server
// serves).
func newExecutionServer(ctx context.Context, s serverSettings, blobs cas.BlobStore, cache *actioncache.Cache, log *slog.Logger, grpcAddr string) (*executionServer, error) {
	e := &executionServer{s: s, log: log, cache: cache, blobs: blobs}
	e.sched = scheduler.New(scheduler.Config{
		Clock:         systemClock{},
		NewID:         uuid.NewString,
		WorkerTimeout: s.workerTimeout,
		PlatformGrace: s.platformGrace,
	})
	e.exec = execution.New(blobs, cache, e.sched, log)
	e.workers = execution.NewWorkers(e.sched, cache, heartbeatInterval, log)
	ctx, e.cancel = context.WithCancel(ctx)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.tick(ctx)
	}()
	if err := e.startLocalWorker(ctx, grpcAddr); err != nil {
		e.stop()
		return nil, err
	}
	return e, nil
}

// tick drives the scheduler's timeouts.
func (e *executionServer) tick(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			e.sched.Tick()
		case <-ctx.Done():
			return
		}
	}
}

func (e *executionServer) register(gs *grpc.Server) {
	repb.RegisterExecutionServer(gs, e.exec)
	lrpb.RegisterOperationsServer(gs, execution.NewOperations(e.sched))
	workerpb.RegisterWorkersServer(gs, e.workers)
}

// capabilities announces execution: every supported digest function and
// the whole int32 range of priorities.
func (e *executionServer) capabilities(string) *repb.ExecutionCapabilities {
	return &repb.ExecutionCapabilities{
		DigestFunction:  repb.DigestFunction_SHA256,
		DigestFunctions: digest.SupportedFunctions(),
		ExecEnabled:     true,
		ExecutionPriorityCapabilities: &repb.PriorityCapabilities{Priorities: []*repb.PriorityCapabilities_PriorityRange{
			{MinPriority: math.MinInt32, MaxPriority: math.MaxInt32},
		}},
	}
}

// startLocalWorker runs the in-process worker against the server's own
// gRPC address: the same code path as a remote worker, over loopback.
func (e *executionServer) startLocalWorker(ctx context.Context, grpcAddr string) error {
	if e.s.workers == 0 {
		return nil
	}
	conn, err := grpcaddr.Dial(grpcAddr)
	if err != nil {
		return err
	}
	run, props, err := localRunner(e.log, e.s.data, e.s.sandbox)
	if err != nil {
		return err
	}
	cfg := worker.Config{
		Conn:           conn,
		Name:           "local",
		Slots:          e.s.workers,
		Properties:     props,
		WorkDir:        filepath.Join(e.s.data, "worker"),
		CacheSize:      e.s.workerCacheSize,
		DefaultTimeout: e.s.defaultTimeout,
		MaxTimeout:     e.s.maxTimeout,
		Runner:         run,
		Logger:         e.log.With("worker", "local"),
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer conn.Close()
		if err := worker.Run(ctx, cfg); err != nil && ctx.Err() == nil {
			e.log.Error("in-process worker stopped", "err", err)
		}
	}()
	return nil
}

// stop ends the timer and the in-process worker and waits for them.
func (e *executionServer) stop() {
	e.exec.Close()
	e.workers.Close()
	e.cancel()
	e.wg.Wait()
}
