// Package worker is the kiln worker: it dials out to the server, holds one
// Connect session (api/workerpb), and runs the actions assigned to it.
//
// For each assignment the worker checks the Action and Command against
// their digests, fetches and validates the input tree, materializes it in
// a fresh build directory from a local file cache (hardlinks, not copies),
// runs the command through a runner.Runner, uploads the outputs and sends
// back an ExecuteResponse. Infrastructure failures (a missing input, a bad
// tree, an unreachable CAS) go into the response's status; they never end
// the session.
//
// Layout under Config.WorkDir:
//
//	build/<n>-<lease>/root     the input root: the command's filesystem view
//	build/<n>-<lease>/stdout   its output, outside the input root
//	build/<n>-<lease>/stderr
//	spare/<n>/                 build directories made ahead (see buildDirs)
//	cache/                     the file cache (see fileCache)
//
// Goroutines: Run owns the session loop and the janitor (which removes
// build directories and makes spare ones, and spare cache files); a session
// owns its heartbeat
// goroutine and one goroutine per lease, and waits for all of them before
// it returns, so leases never outlive the session that received them.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/api/workerpb"
	"github.com/kiln-build/kiln/cas/casclient"
	"github.com/kiln-build/kiln/internal/rpcstatus"
	"github.com/kiln-build/kiln/worker/runner"
)

const (
	// defaultHeartbeat is used when the server's Welcome names no interval.
	defaultHeartbeat = 10 * time.Second
	// Reconnection backoff: doubling from minBackoff up to maxBackoff,
	// each wait drawn between half and all of the current delay.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// Config configures a worker.
type Config struct {
	// Conn reaches the server: its Workers service and its CAS.
	Conn grpc.ClientConnInterface
	// Name identifies the worker in the server's logs and in
	// ExecutedActionMetadata.worker.
	Name string
	// Version is announced in Hello, for the operator.
	Version string
	// Slots is how many actions run at once (at least 1).
	Slots int
	// Properties are the platform properties the worker offers.
	Properties []*workerpb.Property
	// WorkDir holds build directories and the file cache. Build
	// directories left over from an earlier run are removed at start;
	// the cache is kept.
	WorkDir string
	// CacheSize bounds the file cache, in bytes.
	CacheSize int64
	// DefaultTimeout applies to actions that set no timeout; 0 means none.
	DefaultTimeout time.Duration
	// MaxTimeout caps every action's timeout; 0 means no cap.
	MaxTimeout time.Duration
	// Runner runs the commands.
	Runner runner.Runner
	// Logger receives the worker's logs; nil discards them.
	Logger *slog.Logger
}

// worker is the state shared by all sessions of one Run.
type worker struct {
	cfg      Config
	log      *slog.Logger
	client   workerpb.WorkersClient
	cache    *fileCache
	buildDir string        // canonical WorkDir/build
	buildSeq atomic.Uint64 // numbers build directories
	dirs     *buildDirs    // makes build directories, with spares under WorkDir/spare
	janitor  *janitor      // removes build directories and tops up spares
	maxBatch atomic.Int64  // the CAS batch limit, from the last Capabilities call
}

// Run runs the worker until ctx ends: it connects to the server, runs what
// it is assigned, and reconnects with backoff whenever the session breaks
// (leases running then are cancelled; the server requeues them). It
// returns nil when ctx ends, or an error if the configuration or the work
// directory is unusable.
func Run(ctx context.Context, cfg Config) error {
	switch {
	case cfg.Conn == nil:
		return errors.New("worker: no server connection")
	case cfg.Name == "":
		return errors.New("worker: empty name")
	case cfg.Slots < 1:
		return fmt.Errorf("worker: %d slots, want at least 1", cfg.Slots)
	case cfg.WorkDir == "":
		return errors.New("worker: no work directory")
	case cfg.CacheSize <= 0:
		return fmt.Errorf("worker: cache size %d, want more than 0", cfg.CacheSize)
	case cfg.Runner == nil:
		return errors.New("worker: no runner")
	case cfg.DefaultTimeout < 0 || cfg.MaxTimeout < 0:
		return errors.New("worker: negative timeout")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &worker{cfg: cfg, log: log, client: workerpb.NewWorkersClient(cfg.Conn), janitor: newJanitor(janitorMaxDelay)}
	if err := w.prepare(); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	var bg sync.WaitGroup
	defer bg.Wait() // Run returns only once ctx has ended, which stops bg's goroutines
	w.janitor.later(w.fillSpares)
	bg.Go(func() { w.janitor.run(ctx) })
	delay := minBackoff
	failing := false // a failure has been logged since the last session
	for {
		established, err := w.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case established:
			delay = minBackoff
			log.Warn("lost the session with the server; reconnecting", "err", err)
		case !failing:
			log.Warn("cannot reach the server; retrying with backoff", "err", err)
		default:
			log.Debug("still cannot reach the server", "err", err)
		}
		failing = true
		wait := delay/2 + rand.N(delay/2+1)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		delay = min(2*delay, maxBackoff)
	}
}

// janitorMaxDelay is how long housekeeping waits for the next command to
// start (see janitor).
const janitorMaxDelay = 5 * time.Millisecond

// maxSpareBuildDirs caps the spare build directories kept ready: two per
// slot, so that a lease finds one even while the spare of the lease
// before it is still being replaced.
const maxSpareBuildDirs = 256

// Spare files of the file cache, for small input files that are not
// cached yet: this many per slot, up to the maximum. An action that needs
// more creates the rest itself.
const (
	spareFilesPerSlot = 8
	maxSpareFiles     = 1024
)

// fillSpares tops up the spare build directories and cache files.
func (w *worker) fillSpares(ctx context.Context) {
	w.dirs.spares.fill(ctx)
	w.cache.spares.fill(ctx)
}

// prepare creates the work directory, removes stale build directories and
// spares, and opens the file cache.
func (w *worker) prepare() error {
	if err := os.MkdirAll(w.cfg.WorkDir, 0o755); err != nil {
		return err
	}
	// Canonical, so that resolveInRoot can compare absolute symlink
	// targets with it.
	work, err := filepath.EvalSymlinks(w.cfg.WorkDir)
	if err != nil {
		return err
	}
	if work, err = filepath.Abs(work); err != nil {
		return err
	}
	w.buildDir = filepath.Join(work, "build")
	if err := removeTree(w.buildDir); err != nil {
		return fmt.Errorf("remove stale build directories: %w", err)
	}
	if err := os.Mkdir(w.buildDir, 0o755); err != nil {
		return err
	}
	spare := filepath.Join(work, "spare")
	if err := removeTree(spare); err != nil {
		return fmt.Errorf("remove stale spare build directories: %w", err)
	}
	if err := os.Mkdir(spare, 0o755); err != nil {
		return err
	}
	w.dirs = newBuildDirs(w.buildDir, spare, min(2*w.cfg.Slots, maxSpareBuildDirs), w.log)
	w.cache, err = newFileCache(filepath.Join(work, "cache"), w.cfg.CacheSize, min(spareFilesPerSlot*w.cfg.Slots, maxSpareFiles), w.log)
	return err
}

// session is one Connect stream.
type session struct {
	stream workerpb.Workers_ConnectClient
	sendMu sync.Mutex // gRPC streams allow one Send at a time

	// slots lets at most Config.Slots leases run at once, in the order
	// they were assigned.
	slots *slotQueue

	// maxOutputBlobBytes is how much output a COMPLETED update may carry
	// (Welcome.max_output_blob_bytes); 0: all outputs go to the CAS.
	maxOutputBlobBytes int64

	mu     sync.Mutex
	leases map[string]context.CancelFunc // assigned leases; guarded by mu
}

func (s *session) send(m *workerpb.WorkerMessage) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.stream.Send(m)
}

// session runs one session until the stream breaks or ctx ends.
// established reports whether the server welcomed the worker.
func (w *worker) session(ctx context.Context) (established bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	caps, err := casclient.FetchCapabilities(ctx, w.cfg.Conn, "")
	if err != nil {
		return false, err
	}
	w.maxBatch.Store(caps.GetCacheCapabilities().GetMaxBatchTotalSizeBytes())
	stream, err := w.client.Connect(ctx)
	if err != nil {
		return false, rpcstatus.Wrap(err, "connect")
	}
	s := &session{stream: stream, leases: map[string]context.CancelFunc{}, slots: newSlotQueue(w.cfg.Slots)}
	if err := s.send(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Hello{Hello: &workerpb.Hello{
		Name: w.cfg.Name, Properties: w.cfg.Properties, Slots: int32(w.cfg.Slots), Version: w.cfg.Version,
	}}}); err != nil {
		return false, rpcstatus.Wrap(err, "hello")
	}
	first, err := stream.Recv()
	if err != nil {
		return false, rpcstatus.Wrap(err, "waiting for welcome")
	}
	welcome := first.GetWelcome()
	if welcome == nil {
		return false, status.Errorf(codes.Internal, "the server's first message is not a welcome: %v", first)
	}
	s.maxOutputBlobBytes = max(0, welcome.GetMaxOutputBlobBytes())
	w.log.Info("connected to the server", "session", welcome.GetSessionId(), "slots", w.cfg.Slots)

	var wg sync.WaitGroup
	defer func() {
		cancel() // kills every running action of this session
		wg.Wait()
	}()
	interval := time.Duration(welcome.GetHeartbeatIntervalMs()) * time.Millisecond
	if interval <= 0 {
		interval = defaultHeartbeat
	}
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := s.send(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Heartbeat{Heartbeat: &workerpb.Heartbeat{}}}); err != nil {
					cancel() // Recv fails next and ends the session
					return
				}
			}
		}
	})
	for {
		m, err := stream.Recv()
		if err != nil {
			return true, err
		}
		switch k := m.GetKind().(type) {
		case *workerpb.ServerMessage_Assignment:
			w.assign(ctx, s, &wg, k.Assignment)
		case *workerpb.ServerMessage_Cancellation:
			s.mu.Lock()
			if c, ok := s.leases[k.Cancellation.GetLeaseId()]; ok {
				w.log.Info("lease cancelled by the server", "lease", k.Cancellation.GetLeaseId(), "reason", k.Cancellation.GetReason())
				c()
			}
			s.mu.Unlock()
		default:
			w.log.Warn("ignoring an unexpected message from the server", "message", m.String())
		}
	}
}

// assign starts a goroutine (owned by wg) that runs one lease once it has a
// slot (see slotQueue). It is called in the order the server assigned the
// leases, which is the order they get slots in.
func (w *worker) assign(ctx context.Context, s *session, wg *sync.WaitGroup, a *workerpb.Assignment) {
	id := a.GetLeaseId()
	s.mu.Lock()
	if _, dup := s.leases[id]; dup {
		s.mu.Unlock()
		w.log.Warn("ignoring a second assignment of a running lease", "lease", id)
		return
	}
	lctx, lcancel := context.WithCancel(ctx)
	s.leases[id] = lcancel
	s.mu.Unlock()
	slot := s.slots.acquire()
	wg.Go(func() {
		defer lcancel()
		select {
		case <-slot:
		case <-lctx.Done():
			// Cancelled, or the session ended, before a slot was free:
			// it never ran.
			s.slots.abandon(slot)
			s.mu.Lock()
			delete(s.leases, id)
			s.mu.Unlock()
			w.complete(s, id, errorResponse(rpcstatus.FromContext(lctx)), nil)
			return
		}
		resp, blobs, cleanup := w.execute(lctx, s, a)
		// The slot is free once the action's processes are gone and its
		// outputs uploaded, which is now: release it before reporting,
		// so that the next assignment, which may follow the report at
		// once, finds it free. The janitor removes the build directory
		// later.
		s.mu.Lock()
		delete(s.leases, id)
		s.mu.Unlock()
		s.slots.release()
		w.complete(s, id, resp, blobs)
		cleanup()
	})
}
