package execution_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	lrpb "cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/prometheus/client_golang/prometheus"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/kiln-build/kiln/api/workerpb"
	"github.com/kiln-build/kiln/cas"
	"github.com/kiln-build/kiln/cas/actioncache"
	"github.com/kiln-build/kiln/cas/casclient"
	"github.com/kiln-build/kiln/cas/casserver"
	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/cas/memory"
	"github.com/kiln-build/kiln/execution"
	"github.com/kiln-build/kiln/internal/grpcaddr"
	"github.com/kiln-build/kiln/internal/grpcserver"
	"github.com/kiln-build/kiln/scheduler"
	"github.com/kiln-build/kiln/worker"
	"github.com/kiln-build/kiln/worker/runner"
)

// instance is the REAPI instance every test uses.
const instance = "main"

// countingStore counts Puts, so a test can tell that a rejected request stored nothing,
// and the Gets and Puts of each blob.
type countingStore struct {
	cas.BlobStore
	puts     atomic.Int64
	mu       sync.Mutex
	gets     map[digest.Digest]int
	putsByID map[digest.Digest]int
}

func (s *countingStore) Put(ctx context.Context, d digest.Digest, r io.Reader) error {
	s.puts.Add(1)
	s.mu.Lock()
	if s.putsByID == nil {
		s.putsByID = map[digest.Digest]int{}
	}
	s.putsByID[d]++
	s.mu.Unlock()
	return s.BlobStore.Put(ctx, d, r)
}

// putsOf returns how often d was written.
func (s *countingStore) putsOf(d digest.Digest) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.putsByID[d]
}

func (s *countingStore) Get(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	s.mu.Lock()
	if s.gets == nil {
		s.gets = map[digest.Digest]int{}
	}
	s.gets[d]++
	s.mu.Unlock()
	return s.BlobStore.Get(ctx, d)
}

// getsOf returns how often d was read.
func (s *countingStore) getsOf(d digest.Digest) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gets[d]
}

// countingRunner counts the commands handed to the runner: how often an action really ran.
type countingRunner struct {
	runner.Runner
	runs atomic.Int64
}

func (r *countingRunner) Run(ctx context.Context, req runner.Request) (runner.Result, error) {
	r.runs.Add(1)
	return r.Runner.Run(ctx, req)
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// harness is a kiln server assembled in process like cmd/kiln does it (CAS, ByteStream,
// action cache, Execution, Operations and the worker endpoint on one gRPC server, on a
// real loopback socket), with one real worker (worker.Run, host runner) connected to it
// over that socket, and clients of every service.
type harness struct {
	t       *testing.T
	blobs   *countingStore // the CAS, as the services see it
	results *countingStore // action-cache entries
	cache   *actioncache.Cache
	sched   *scheduler.Scheduler
	runner  *countingRunner

	conn *grpc.ClientConn
	exec repb.ExecutionClient
	ops  lrpb.OperationsClient
	ac   repb.ActionCacheClient
	cas  *casclient.Client

	// marks is a directory outside every build directory that commands can write to
	// (it is $MARKS in their environment): how a test sees what an action did.
	marks string
}

// newHarness starts the server and a worker offering OSFamily=linux with slots slots.
func newHarness(t *testing.T, slots int) *harness {
	t.Helper()
	logs := &testWriter{t: t}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	h := &harness{
		t:       t,
		blobs:   &countingStore{BlobStore: cas.NewVerifyingStore(cas.NewEmptyBlobStore(memory.New(1 << 30)))},
		results: &countingStore{BlobStore: memory.New(64 << 20)},
		runner:  &countingRunner{Runner: runner.NewHost()},
		marks:   t.TempDir(),
	}
	h.cache = actioncache.New(h.results, h.blobs)
	var ids atomic.Int64
	h.sched = scheduler.New(scheduler.Config{
		Clock: systemClock{},
		NewID: func() string { return "op-" + strconv.FormatInt(ids.Add(1), 10) },
	})
	exec := execution.New(h.blobs, h.cache, h.sched, log)
	workers := execution.NewWorkers(h.sched, h.cache, time.Second, log)

	gs := grpcserver.New(log, prometheus.NewRegistry())
	bs := casserver.NewByteStream(h.blobs, time.Minute)
	repb.RegisterCapabilitiesServer(gs, casserver.NewCapabilities(4<<20-64<<10, nil))
	repb.RegisterContentAddressableStorageServer(gs, casserver.NewCAS(h.blobs, 4<<20-64<<10))
	repb.RegisterActionCacheServer(gs, actioncache.NewService(h.cache))
	bspb.RegisterByteStreamServer(gs, bs)
	repb.RegisterExecutionServer(gs, exec)
	lrpb.RegisterOperationsServer(gs, execution.NewOperations(h.sched))
	workerpb.RegisterWorkersServer(gs, workers)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		gs.Serve(l)
	}()

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { // the scheduler's timer, as in cmd/kiln
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				h.sched.Tick()
			case <-ctx.Done():
				return
			}
		}
	})
	wconn, err := grpcaddr.Dial(l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() {
		err := worker.Run(ctx, worker.Config{
			Conn: wconn, Name: "w1", Slots: slots, WorkDir: t.TempDir(), CacheSize: 1 << 30,
			Properties: []*workerpb.Property{{Name: "OSFamily", Value: "linux"}},
			Runner:     h.runner, Logger: log.With("worker", "w1"),
		})
		if err != nil {
			t.Errorf("worker.Run: %v", err)
		}
	})
	if h.conn, err = grpcaddr.Dial(l.Addr().String()); err != nil {
		t.Fatal(err)
	}
	h.exec = repb.NewExecutionClient(h.conn)
	h.ops = lrpb.NewOperationsClient(h.conn)
	h.ac = repb.NewActionCacheClient(h.conn)
	h.cas = casclient.New(h.conn, instance, digest.SHA256, 4<<20-64<<10)
	t.Cleanup(func() {
		h.conn.Close()
		exec.Close()
		workers.Close()
		cancel()
		wg.Wait()
		wconn.Close()
		bs.Close()
		gs.Stop()
		<-served
		logs.stop()
	})

	// Wait for the worker, so that tests start with a platform that has a worker.
	deadline := time.Now().Add(10 * time.Second)
	for len(h.sched.Stats().Workers) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the worker did not connect within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return h
}

// testWriter sends log lines to t.Log, so they show with -v or on failure, until
// stop: gRPC handlers may still log while they return after the server stopped, and
// t.Log after the test has completed panics.
type testWriter struct {
	t       *testing.T
	mu      sync.Mutex
	stopped bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
}

// put uploads data through the CAS service and returns its digest.
func (h *harness) put(data []byte) digest.Digest {
	h.t.Helper()
	d := digest.FromBytes(digest.SHA256, data)
	if err := h.cas.Upload(context.Background(), []casclient.Blob{{Digest: d, Data: data}}); err != nil {
		h.t.Fatalf("upload %s: %v", d, err)
	}
	return d
}

// putProto uploads m, serialized as proto.Marshal does it.
func (h *harness) putProto(m proto.Message) digest.Digest {
	h.t.Helper()
	return h.put(mustMarshal(h.t, m))
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	data, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// shell returns a Command running script with sh -c, with PATH set and $MARKS naming
// the harness's marks directory.
func (h *harness) shell(script string) *repb.Command {
	return &repb.Command{
		Arguments: []string{"sh", "-c", script},
		EnvironmentVariables: []*repb.Command_EnvironmentVariable{
			{Name: "MARKS", Value: h.marks},
			{Name: "PATH", Value: "/bin:/usr/bin"},
		},
	}
}

// actionSpec is what an Action is built from; the zero value of each field is the
// usual choice.
type actionSpec struct {
	cmd        *repb.Command
	root       digest.Digest // zero: the empty directory
	timeout    time.Duration
	doNotCache bool
	platform   *repb.Platform
	salt       string // makes otherwise equal actions differ
}

// action uploads the Command, the input root (when it is the empty directory) and the
// Action, and returns the Action's digest.
func (h *harness) action(s actionSpec) digest.Digest {
	h.t.Helper()
	if s.root.IsZero() {
		s.root = h.putProto(&repb.Directory{})
	}
	a := &repb.Action{
		CommandDigest:   h.putProto(s.cmd).Proto(),
		InputRootDigest: s.root.Proto(),
		DoNotCache:      s.doNotCache,
		Platform:        s.platform,
		Salt:            []byte(s.salt),
	}
	if s.timeout > 0 {
		a.Timeout = durationpb.New(s.timeout)
	}
	return h.putProto(a)
}

// request is an ExecuteRequest for action.
func request(action digest.Digest) *repb.ExecuteRequest {
	return &repb.ExecuteRequest{InstanceName: instance, ActionDigest: action.Proto(), DigestFunction: repb.DigestFunction_SHA256}
}

// execute runs one Execute call to its end and returns the last Operation, or the
// error that ended the stream.
func (h *harness) execute(ctx context.Context, req *repb.ExecuteRequest) (*lrpb.Operation, error) {
	stream, err := h.exec.Execute(ctx, req)
	if err != nil {
		return nil, err
	}
	return lastOperation(stream)
}

// lastOperation reads an Execute or WaitExecution stream to its end.
func lastOperation(stream interface {
	Recv() (*lrpb.Operation, error)
}) (*lrpb.Operation, error) {
	var last *lrpb.Operation
	for {
		op, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			if last == nil {
				return nil, status.Error(codes.Internal, "the stream ended without an operation")
			}
			return last, nil
		}
		if err != nil {
			return nil, err
		}
		last = op
	}
}

// mustExecute is execute for calls that must complete; it returns the response.
func (h *harness) mustExecute(req *repb.ExecuteRequest) *repb.ExecuteResponse {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	op, err := h.execute(ctx, req)
	if err != nil {
		h.t.Fatalf("Execute: %v", err)
	}
	return executeResponse(h.t, op)
}

// executeResponse checks that op is done, with a response and no error (execution
// failures belong in ExecuteResponse.status), and returns the response.
func executeResponse(t *testing.T, op *lrpb.Operation) *repb.ExecuteResponse {
	t.Helper()
	if !op.GetDone() {
		t.Fatalf("operation %s is not done", op.GetName())
	}
	if op.GetError() != nil {
		t.Fatalf("operation %s has Operation.error %v; failures belong in ExecuteResponse.status", op.GetName(), op.GetError())
	}
	resp := &repb.ExecuteResponse{}
	if err := op.GetResponse().UnmarshalTo(resp); err != nil {
		t.Fatalf("operation %s: response: %v", op.GetName(), err)
	}
	return resp
}

// stage returns the stage in op's metadata.
func stage(t *testing.T, op *lrpb.Operation) repb.ExecutionStage_Value {
	t.Helper()
	md := &repb.ExecuteOperationMetadata{}
	if err := op.GetMetadata().UnmarshalTo(md); err != nil {
		t.Fatalf("operation %s: metadata: %v", op.GetName(), err)
	}
	return md.GetStage()
}

// read downloads a blob through the CAS services.
func (h *harness) read(pb *repb.Digest) []byte {
	h.t.Helper()
	d, err := digest.FromProto(digest.SHA256, pb)
	if err != nil {
		h.t.Fatal(err)
	}
	data, err := h.cas.ReadBlob(context.Background(), d)
	if err != nil {
		h.t.Fatalf("read %s: %v", d, err)
	}
	return data
}

// requireNotCached checks that the action cache has no entry for action.
func (h *harness) requireNotCached(action digest.Digest) {
	h.t.Helper()
	_, err := h.ac.GetActionResult(context.Background(), &repb.GetActionResultRequest{
		InstanceName: instance, ActionDigest: action.Proto(), DigestFunction: repb.DigestFunction_SHA256,
	})
	if status.Code(err) != codes.NotFound {
		h.t.Errorf("GetActionResult(%s): %v, want NotFound: the result must not be cached", action, err)
	}
}

// mark returns the content of file name in the marks directory, "" if it does not exist.
func (h *harness) mark(name string) string {
	h.t.Helper()
	data, err := os.ReadFile(filepath.Join(h.marks, name))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		h.t.Fatal(err)
	}
	return string(data)
}

// requireStatus checks err's code exactly and that its message mentions want.
func requireStatus(t *testing.T, err error, code codes.Code, want string) {
	t.Helper()
	s := status.Convert(err)
	if err == nil || s.Code() != code || !strings.Contains(s.Message(), want) {
		t.Fatalf("got %v, want %v mentioning %q", err, code, want)
	}
}
