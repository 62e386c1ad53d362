package worker_test

import (
	"bytes"
	"context"
	"crypto/rand"
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

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/kiln-build/kiln/api/workerpb"
	"github.com/kiln-build/kiln/cas"
	"github.com/kiln-build/kiln/cas/casclient"
	"github.com/kiln-build/kiln/cas/casserver"
	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/cas/memory"
	"github.com/kiln-build/kiln/worker"
	"github.com/kiln-build/kiln/worker/runner"
)

// countingStore counts the reads of each blob.
type countingStore struct {
	cas.BlobStore
	mu    sync.Mutex
	reads map[digest.Digest]int
}

func (s *countingStore) Get(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	s.mu.Lock()
	s.reads[d]++
	s.mu.Unlock()
	return s.BlobStore.Get(ctx, d)
}

func (s *countingStore) readsOf(ds ...digest.Digest) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, d := range ds {
		n += s.reads[d]
	}
	return n
}

// fakeServer is a Workers service that hands out what the test sends on
// assign and reports what the worker sends.
type fakeServer struct {
	workerpb.UnimplementedWorkersServer
	hellos     chan *workerpb.Hello
	assign     chan *workerpb.ServerMessage
	updates    chan *workerpb.LeaseUpdate
	heartbeats atomic.Int32
	sessions   atomic.Int32
	// dropFirst ends the first session right after its welcome.
	dropFirst bool
	// maxOutputBlobBytes is announced in the welcome.
	maxOutputBlobBytes int64
}

func (f *fakeServer) Connect(stream workerpb.Workers_ConnectServer) error {
	m, err := stream.Recv()
	if err != nil {
		return err
	}
	f.hellos <- m.GetHello()
	n := f.sessions.Add(1)
	if err := stream.Send(&workerpb.ServerMessage{Kind: &workerpb.ServerMessage_Welcome{Welcome: &workerpb.Welcome{
		SessionId: "s", HeartbeatIntervalMs: 50, MaxOutputBlobBytes: f.maxOutputBlobBytes,
	}}}); err != nil {
		return err
	}
	if f.dropFirst && n == 1 {
		return status.Error(codes.Unavailable, "server going away")
	}
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				return
			}
			switch k := m.GetKind().(type) {
			case *workerpb.WorkerMessage_Heartbeat:
				f.heartbeats.Add(1)
			case *workerpb.WorkerMessage_LeaseUpdate:
				f.updates <- k.LeaseUpdate
			}
		}
	}()
	for {
		select {
		case m := <-f.assign:
			if err := stream.Send(m); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return nil
		}
	}
}

type env struct {
	t       testing.TB
	store   *countingStore
	fake    *fakeServer
	conn    *grpc.ClientConn
	workDir string
	seq     int
	// updates not yet claimed by a waiter, by lease
	mu      sync.Mutex
	pending map[string][]*workerpb.LeaseUpdate
}

func newEnv(t testing.TB, fake *fakeServer) *env {
	t.Helper()
	if fake == nil {
		fake = &fakeServer{}
	}
	fake.hellos = make(chan *workerpb.Hello, 10)
	fake.assign = make(chan *workerpb.ServerMessage)
	fake.updates = make(chan *workerpb.LeaseUpdate, 100)
	e := &env{t: t, fake: fake, workDir: t.TempDir(), pending: map[string][]*workerpb.LeaseUpdate{}}
	e.store = &countingStore{BlobStore: cas.NewVerifyingStore(cas.NewEmptyBlobStore(memory.New(1 << 30))), reads: map[digest.Digest]int{}}
	gs := grpc.NewServer()
	bsrv := casserver.NewByteStream(e.store, time.Second)
	repb.RegisterContentAddressableStorageServer(gs, casserver.NewCAS(e.store, 1<<20))
	repb.RegisterCapabilitiesServer(gs, casserver.NewCapabilities(1<<20, nil))
	bspb.RegisterByteStreamServer(gs, bsrv)
	workerpb.RegisterWorkersServer(gs, fake)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(l)
	e.conn, err = grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.conn.Close()
		bsrv.Close()
		gs.Stop()
	})
	return e
}

// startWorker runs a worker until the returned stop is called (or the
// test ends), once it has said hello.
func (e *env) startWorker(slots int, mod func(*worker.Config)) (stop func()) {
	stop, _ = e.startWorkerHello(slots, mod)
	return stop
}

func (e *env) startWorkerHello(slots int, mod func(*worker.Config)) (stop func(), hello *workerpb.Hello) {
	ctx, cancel := context.WithCancel(context.Background())
	cfg := worker.Config{
		Conn: e.conn, Name: "w1", Slots: slots, WorkDir: e.workDir, CacheSize: 1 << 30,
		Properties:     []*workerpb.Property{{Name: "OSFamily", Value: "linux"}},
		DefaultTimeout: time.Minute, MaxTimeout: time.Hour, Runner: runner.NewHost(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if mod != nil {
		mod(&cfg)
	}
	done := make(chan error, 1)
	go func() { done <- worker.Run(ctx, cfg) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					e.t.Errorf("worker.Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				e.t.Errorf("worker.Run did not return after its context ended")
			}
		})
	}
	e.t.Cleanup(stop)
	select {
	case hello = <-e.fake.hellos:
	case <-time.After(10 * time.Second):
		e.t.Fatal("the worker never said hello")
	}
	return stop, hello
}

func (e *env) put(data []byte) digest.Digest {
	e.t.Helper()
	d := digest.FromBytes(digest.SHA256, data)
	if err := e.store.Put(context.Background(), d, bytes.NewReader(data)); err != nil {
		e.t.Fatal(err)
	}
	return d
}

func (e *env) putProto(m proto.Message) digest.Digest {
	e.t.Helper()
	data, err := proto.Marshal(m)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.put(data)
}

func (e *env) read(pb *repb.Digest) []byte {
	e.t.Helper()
	d, err := digest.FromProto(digest.SHA256, pb)
	if err != nil {
		e.t.Fatal(err)
	}
	data, err := casserver.ReadBlob(context.Background(), e.store, d)
	if err != nil {
		e.t.Fatalf("read %s: %v", d, err)
	}
	return data
}

// assignment builds an Assignment of cmd on the input root.
func (e *env) assignment(cmd *repb.Command, root digest.Digest, timeout time.Duration) *workerpb.Assignment {
	e.t.Helper()
	cmdBytes, _ := proto.Marshal(cmd)
	action := &repb.Action{CommandDigest: digest.FromBytes(digest.SHA256, cmdBytes).Proto(), InputRootDigest: root.Proto()}
	if timeout > 0 {
		action.Timeout = durationpb.New(timeout)
	}
	actionBytes, _ := proto.Marshal(action)
	ad, _ := proto.Marshal(digest.FromBytes(digest.SHA256, actionBytes).Proto())
	e.seq++
	return &workerpb.Assignment{
		LeaseId: "lease/" + string(rune('a'+e.seq%26)) + "-" + time.Now().Format("150405.000000000"), InstanceName: "main",
		DigestFunction: int32(repb.DigestFunction_SHA256), ActionDigest: ad, Action: actionBytes, Command: cmdBytes,
		QueuedUnixNanos: time.Now().Add(-time.Second).UnixNano(),
	}
}

func (e *env) send(m *workerpb.ServerMessage) {
	e.t.Helper()
	select {
	case e.fake.assign <- m:
	case <-time.After(10 * time.Second):
		e.t.Fatal("no session took the message")
	}
}

// wait returns the response of lease, checking that EXECUTING came first.
func (e *env) wait(lease string) *repb.ExecuteResponse {
	e.t.Helper()
	resp := &repb.ExecuteResponse{}
	if err := proto.Unmarshal(e.waitUpdate(lease).GetExecuteResponse(), resp); err != nil {
		e.t.Fatal(err)
	}
	return resp
}

// waitUpdate returns the COMPLETED update of lease, checking that
// EXECUTING came first.
func (e *env) waitUpdate(lease string) *workerpb.LeaseUpdate {
	e.t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		e.mu.Lock()
		ups := e.pending[lease]
		e.mu.Unlock()
		if len(ups) > 0 && ups[len(ups)-1].GetStage() == workerpb.LeaseUpdate_COMPLETED {
			if len(ups) != 2 || ups[0].GetStage() != workerpb.LeaseUpdate_EXECUTING {
				e.t.Fatalf("lease %s: updates %v, want EXECUTING then COMPLETED", lease, ups)
			}
			return ups[1]
		}
		select {
		case u := <-e.fake.updates:
			e.mu.Lock()
			e.pending[u.GetLeaseId()] = append(e.pending[u.GetLeaseId()], u)
			e.mu.Unlock()
		case <-deadline:
			e.t.Fatalf("lease %s: no response", lease)
		}
	}
}

func (e *env) execute(cmd *repb.Command, root digest.Digest, timeout time.Duration) *repb.ExecuteResponse {
	e.t.Helper()
	a := e.assignment(cmd, root, timeout)
	e.send(&workerpb.ServerMessage{Kind: &workerpb.ServerMessage_Assignment{Assignment: a}})
	return e.wait(a.GetLeaseId())
}

func shell(script string, outputs ...string) *repb.Command {
	return &repb.Command{
		Arguments:            []string{"/bin/sh", "-c", script},
		EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/usr/bin:/bin"}},
		OutputPaths:          outputs,
	}
}

func requireStatus(t *testing.T, resp *repb.ExecuteResponse, want codes.Code, msgPart string) {
	t.Helper()
	if c := codes.Code(resp.GetStatus().GetCode()); c != want || !strings.Contains(resp.GetStatus().GetMessage(), msgPart) {
		t.Fatalf("status %v %q, want %v mentioning %q", c, resp.GetStatus().GetMessage(), want, msgPart)
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func emptyRoot() digest.Digest { return digest.FromBytes(digest.SHA256, nil) }

func TestSessionAnnouncesTheWorkerAndSendsHeartbeats(t *testing.T) {
	e := newEnv(t, nil)
	_, hello := e.startWorkerHello(3, func(c *worker.Config) { c.Name = "builder-7"; c.Version = "v1.2" })
	if hello.GetName() != "builder-7" || hello.GetSlots() != 3 || hello.GetVersion() != "v1.2" ||
		len(hello.GetProperties()) != 1 || hello.GetProperties()[0].GetName() != "OSFamily" {
		t.Errorf("hello %v", hello)
	}
	time.Sleep(300 * time.Millisecond)
	if n := e.fake.heartbeats.Load(); n < 2 {
		t.Errorf("%d heartbeats in 300ms at a 50ms interval", n)
	}
	resp := e.execute(shell("true"), emptyRoot(), 0)
	if resp.GetStatus().GetCode() != 0 || resp.GetResult().GetExecutionMetadata().GetWorker() != "builder-7" {
		t.Fatalf("response %v", resp)
	}
}

func TestOutputs(t *testing.T) {
	e := newEnv(t, nil)
	e.startWorker(2, nil)
	input := []byte("input data\n")
	inputRoot := e.putProto(&repb.Directory{Files: []*repb.FileNode{{Name: "in.txt", Digest: e.put(input).Proto()}}})
	script := `
set -e
cp in.txt out/file.txt
printf '#!/bin/sh\n' > out/tool.sh; chmod +x out/tool.sh
mkdir -p out/dir/sub1 out/dir/sub2 out/dir/empty
echo same > out/dir/sub1/a; echo same > out/dir/sub2/a
ln -s sub1/a out/dir/link
ln -s file.txt out/link
echo to-stdout; echo to-stderr >&2
exit 3`
	cmd := shell(script, "out/dir", "out/file.txt", "out/link", "out/missing", "out/tool.sh")
	start := time.Now()
	resp := e.execute(cmd, inputRoot, 0)
	if resp.GetStatus().GetCode() != 0 {
		t.Fatalf("status %v", resp.GetStatus())
	}
	res := resp.GetResult()
	if res.GetExitCode() != 3 {
		t.Errorf("exit code %d, want 3 (a failing command is still a result)", res.GetExitCode())
	}
	if got := string(e.read(res.GetStdoutDigest())); got != "to-stdout\n" {
		t.Errorf("stdout %q", got)
	}
	if got := string(e.read(res.GetStderrDigest())); got != "to-stderr\n" {
		t.Errorf("stderr %q", got)
	}

	files := map[string]*repb.OutputFile{}
	for _, f := range res.GetOutputFiles() {
		files[f.GetPath()] = f
	}
	if f := files["out/file.txt"]; f == nil || f.GetIsExecutable() || !bytes.Equal(e.read(f.GetDigest()), input) {
		t.Errorf("out/file.txt: %v", f)
	}
	if f := files["out/tool.sh"]; f == nil || !f.GetIsExecutable() || string(e.read(f.GetDigest())) != "#!/bin/sh\n" {
		t.Errorf("out/tool.sh: %v", f)
	}
	if len(files) != 2 {
		t.Errorf("output files %v, want exactly out/file.txt and out/tool.sh (out/missing is absent)", res.GetOutputFiles())
	}
	if len(res.GetOutputSymlinks()) != 1 || res.GetOutputSymlinks()[0].GetPath() != "out/link" || res.GetOutputSymlinks()[0].GetTarget() != "file.txt" {
		t.Errorf("output symlinks %v", res.GetOutputSymlinks())
	}
	if l := res.GetOutputFileSymlinks(); len(l) != 1 || l[0].GetPath() != "out/link" || len(res.GetOutputDirectorySymlinks()) != 0 {
		t.Errorf("legacy symlink lists %v / %v, want out/link among the file symlinks", l, res.GetOutputDirectorySymlinks())
	}

	if len(res.GetOutputDirectories()) != 1 || res.GetOutputDirectories()[0].GetPath() != "out/dir" {
		t.Fatalf("output directories %v", res.GetOutputDirectories())
	}
	tree := &repb.Tree{}
	if err := proto.Unmarshal(e.read(res.GetOutputDirectories()[0].GetTreeDigest()), tree); err != nil {
		t.Fatal(err)
	}
	root := tree.GetRoot()
	var names []string
	for _, d := range root.GetDirectories() {
		names = append(names, d.GetName())
	}
	if strings.Join(names, ",") != "empty,sub1,sub2" || len(root.GetSymlinks()) != 1 || root.GetSymlinks()[0].GetTarget() != "sub1/a" {
		t.Errorf("tree root %v", root)
	}
	// sub1 and sub2 are the same directory: one child, plus the empty one.
	if len(tree.GetChildren()) != 2 {
		t.Errorf("tree has %d children, want 2 (sub1 and sub2 deduplicated, and empty)", len(tree.GetChildren()))
	}
	for _, c := range tree.GetChildren() {
		for _, f := range c.GetFiles() {
			if string(e.read(f.GetDigest())) != "same\n" {
				t.Errorf("file %s in the tree has the wrong content", f.GetName())
			}
		}
	}

	md := res.GetExecutionMetadata()
	stamps := []struct {
		name string
		t    time.Time
	}{
		{"queued", md.GetQueuedTimestamp().AsTime()},
		{"worker_start", md.GetWorkerStartTimestamp().AsTime()},
		{"input_fetch_start", md.GetInputFetchStartTimestamp().AsTime()},
		{"input_fetch_completed", md.GetInputFetchCompletedTimestamp().AsTime()},
		{"execution_start", md.GetExecutionStartTimestamp().AsTime()},
		{"execution_completed", md.GetExecutionCompletedTimestamp().AsTime()},
		{"output_upload_start", md.GetOutputUploadStartTimestamp().AsTime()},
		{"output_upload_completed", md.GetOutputUploadCompletedTimestamp().AsTime()},
		{"worker_completed", md.GetWorkerCompletedTimestamp().AsTime()},
	}
	for i, s := range stamps {
		if s.t.Before(start.Add(-time.Minute)) || s.t.After(time.Now()) {
			t.Errorf("%s timestamp %v is missing or wrong", s.name, s.t)
		}
		if i > 0 && s.t.Before(stamps[i-1].t) {
			t.Errorf("%s (%v) is before %s (%v)", s.name, s.t, stamps[i-1].name, stamps[i-1].t)
		}
	}
	if md.GetWorker() != "w1" {
		t.Errorf("worker %q", md.GetWorker())
	}
}

func TestLegacyOutputFields(t *testing.T) {
	e := newEnv(t, nil)
	e.startWorker(1, nil)
	cmd := shell(`mkdir -p d real; echo x > f; ln -s real dl; ln -s f fl; echo y > notdir`)
	cmd.OutputPaths = nil
	cmd.OutputFiles = []string{"f", "fl"}
	cmd.OutputDirectories = []string{"d", "dl", "notdir"}
	resp := e.execute(cmd, emptyRoot(), 0)
	res := resp.GetResult()
	requireStatus(t, resp, codes.FailedPrecondition, `output directory "notdir" is a regular file`)
	if len(res.GetOutputFiles()) != 1 || len(res.GetOutputDirectories()) != 1 {
		t.Errorf("files %v, directories %v", res.GetOutputFiles(), res.GetOutputDirectories())
	}
	if l := res.GetOutputFileSymlinks(); len(l) != 1 || l[0].GetPath() != "fl" {
		t.Errorf("output_file_symlinks %v", l)
	}
	if l := res.GetOutputDirectorySymlinks(); len(l) != 1 || l[0].GetPath() != "dl" || l[0].GetTarget() != "real" {
		t.Errorf("output_directory_symlinks %v", l)
	}
	if len(res.GetOutputSymlinks()) != 0 {
		t.Errorf("output_symlinks %v, want none without output_paths", res.GetOutputSymlinks())
	}
}

func TestEnvironmentAndWorkingDirectory(t *testing.T) {
	e := newEnv(t, nil)
	e.startWorker(1, nil)
	cmd := &repb.Command{
		Arguments:            []string{"sh", "-c", `pwd > ../out/pwd; env | sort > ../out/env`},
		EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "A", Value: "1"}, {Name: "PATH", Value: "/usr/bin:/bin"}},
		WorkingDirectory:     "work",
		OutputPaths:          []string{"../out/env"},
	}
	// "../out/env" is not a valid output path: the command is refused.
	requireStatus(t, e.execute(cmd, emptyRoot(), 0), codes.InvalidArgument, `path "../out/env" has a ".." segment`)
	cmd.Arguments = []string{"sh", "-c", `pwd > sub/pwd; env > sub/env`}
	cmd.OutputPaths = []string{"sub/env", "sub/pwd"}
	resp := e.execute(cmd, emptyRoot(), 0)
	files := map[string]string{}
	for _, f := range resp.GetResult().GetOutputFiles() {
		files[f.GetPath()] = string(e.read(f.GetDigest()))
	}
	// sh may add PWD, SHLVL and _; nothing of the worker's environment may appear.
	if !strings.Contains(files["sub/env"], "A=1\n") || strings.Contains(files["sub/env"], "HOME=") {
		t.Errorf("environment %q", files["sub/env"])
	}
	if !strings.HasSuffix(files["sub/pwd"], "/root/work\n") {
		t.Errorf("working directory %q", files["sub/pwd"])
	}
}

func TestFileCache(t *testing.T) {
	e := newEnv(t, nil)
	big := randomBytes(3 << 20) // ByteStream
	small := randomBytes(1000)  // batch size: BatchReadBlobs
	bd, sd := e.put(big), e.put(small)
	sub := e.putProto(&repb.Directory{Files: []*repb.FileNode{{Name: "small", Digest: sd.Proto()}}})
	root := e.putProto(&repb.Directory{
		Files: []*repb.FileNode{
			{Name: "big", Digest: bd.Proto()},
			{Name: "empty", Digest: digest.FromBytes(digest.SHA256, nil).Proto()},
			{Name: "small", Digest: sd.Proto()},
			{Name: "small.exe", Digest: sd.Proto(), IsExecutable: true},
		},
		Directories: []*repb.DirectoryNode{{Name: "a", Digest: sub.Proto()}, {Name: "b", Digest: sub.Proto()}},
	})
	// The command reports link counts and modes; it fails if any input
	// differs from what was sent.
	script := `cmp -s small a/small && cmp -s small b/small && cmp -s small small.exe && test -x small.exe && test ! -x small && test ! -s empty && stat -c '%h' big`
	run := func() *repb.ExecuteResponse {
		resp := e.execute(shell(script), root, 0)
		if resp.GetStatus().GetCode() != 0 || resp.GetResult().GetExitCode() != 0 {
			t.Fatalf("status %v, exit %d, stderr %q", resp.GetStatus(), resp.GetResult().GetExitCode(), e.read(resp.GetResult().GetStderrDigest()))
		}
		return resp
	}

	stop := e.startWorker(2, nil)
	t.Run("FirstRunDownloadsEachFileOnce", func(t *testing.T) {
		// Two identical actions at once: the downloads are shared.
		a1, a2 := e.assignment(shell(script), root, 0), e.assignment(shell(script+" ; true"), root, 0)
		e.send(&workerpb.ServerMessage{Kind: &workerpb.ServerMessage_Assignment{Assignment: a1}})
		e.send(&workerpb.ServerMessage{Kind: &workerpb.ServerMessage_Assignment{Assignment: a2}})
		for _, a := range []*workerpb.Assignment{a1, a2} {
			if resp := e.wait(a.GetLeaseId()); resp.GetResult().GetExitCode() != 0 {
				t.Fatalf("status %v, stderr %q", resp.GetStatus(), e.read(resp.GetResult().GetStderrDigest()))
			}
		}
		// Each once: one read of small fills both its plain and its
		// executable entry.
		if n, m := e.store.readsOf(bd), e.store.readsOf(sd); n != 1 || m != 1 {
			t.Errorf("big read %d times, small %d times; want 1 and 1", n, m)
		}
	})
	t.Run("SecondRunDownloadsNothing", func(t *testing.T) {
		before := e.store.readsOf(bd, sd)
		resp := run()
		if n := e.store.readsOf(bd, sd) - before; n != 0 {
			t.Errorf("%d file reads on the second run, want 0", n)
		}
		links, _ := strconv.Atoi(strings.TrimSpace(string(e.read(resp.GetResult().GetStdoutDigest()))))
		if links < 2 {
			t.Errorf("big has %d links, want the cache's and the build directory's", links)
		}
	})
	stop()
	t.Run("CacheSurvivesRestart", func(t *testing.T) {
		e.startWorker(1, nil)
		before := e.store.readsOf(bd, sd)
		run()
		if n := e.store.readsOf(bd, sd) - before; n != 0 {
			t.Errorf("%d file reads after a restart, want 0", n)
		}
		// Build directories are removed once their action is done.
		ents, _ := os.ReadDir(filepath.Join(e.workDir, "build"))
		deadline := time.Now().Add(5 * time.Second)
		for len(ents) > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			ents, _ = os.ReadDir(filepath.Join(e.workDir, "build"))
		}
		if len(ents) != 0 {
			t.Errorf("build directories left behind: %v", ents)
		}
	})
}

func TestSmallCacheStillWorks(t *testing.T) {
	// A cache smaller than one input: the file is fetched straight into
	// the build directory and the action still runs.
	e := newEnv(t, nil)
	e.startWorker(1, func(c *worker.Config) { c.CacheSize = 100 })
	data := randomBytes(5000)
	root := e.putProto(&repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: e.put(data).Proto()}}})
	resp := e.execute(shell("wc -c < f"), root, 0)
	if got := strings.TrimSpace(string(e.read(resp.GetResult().GetStdoutDigest()))); got != "5000" {
		t.Fatalf("status %v, stdout %q", resp.GetStatus(), got)
	}
}

func TestBadInputTrees(t *testing.T) {
	e := newEnv(t, nil)
	e.startWorker(1, nil)
	f := e.put([]byte("x")).Proto()
	for _, tc := range []struct {
		name string
		dir  *repb.Directory
		msg  string
	}{
		{"DotDot", &repb.Directory{Files: []*repb.FileNode{{Name: "..", Digest: f}}}, `name ".." is not allowed`},
		{"Slash", &repb.Directory{Files: []*repb.FileNode{{Name: "a/b", Digest: f}}}, `contains '/'`},
		{"EscapingSymlink", &repb.Directory{Symlinks: []*repb.SymlinkNode{{Name: "s", Target: "../etc"}}}, "escapes the input root"},
		{"Unsorted", &repb.Directory{Files: []*repb.FileNode{{Name: "b", Digest: f}, {Name: "a", Digest: f}}}, "not sorted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The bad directory sits one level down, reached through GetTree.
			root := e.putProto(&repb.Directory{Directories: []*repb.DirectoryNode{{Name: "sub", Digest: e.putProto(tc.dir).Proto()}}})
			if tc.name == "EscapingSymlink" {
				root = e.putProto(tc.dir) // at the root, "../etc" escapes
			}
			requireStatus(t, e.execute(shell("true"), root, 0), codes.InvalidArgument, tc.msg)
		})
	}
}

func TestMissingInputs(t *testing.T) {
	e := newEnv(t, nil)
	e.startWorker(1, nil)
	absentFile := digest.FromBytes(digest.SHA256, []byte("never uploaded"))
	absentDir := digest.FromBytes(digest.SHA256, []byte("not a directory either"))
	root := e.putProto(&repb.Directory{
		Files:       []*repb.FileNode{{Name: "f", Digest: absentFile.Proto()}},
		Directories: []*repb.DirectoryNode{{Name: "d", Digest: absentDir.Proto()}},
	})
	for _, tc := range []struct {
		name string
		root digest.Digest
		want []digest.Digest
	}{
		{"FileAndDirectory", root, []digest.Digest{absentDir}}, // directories are checked first
		{"Root", absentDir, []digest.Digest{absentDir}},
		{"File", e.putProto(&repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: absentFile.Proto()}}}), []digest.Digest{absentFile}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.execute(shell("true"), tc.root, 0)
			requireStatus(t, resp, codes.FailedPrecondition, "missing from the CAS")
			var subjects []string
			for _, det := range status.FromProto(resp.GetStatus()).Details() {
				if pf, ok := det.(*errdetails.PreconditionFailure); ok {
					for _, v := range pf.GetViolations() {
						if v.GetType() != "MISSING" {
							t.Errorf("violation type %q", v.GetType())
						}
						subjects = append(subjects, v.GetSubject())
					}
				}
			}
			var want []string
			for _, d := range tc.want {
				want = append(want, "blobs/"+d.Hash()+"/"+strconv.FormatInt(d.Size(), 10))
			}
			if strings.Join(subjects, " ") != strings.Join(want, " ") {
				t.Errorf("violations %v, want %v", subjects, want)
			}
		})
	}
}

func TestOutputsNeverLeaveTheBuildDirectory(t *testing.T) {
	e := newEnv(t, nil)
	e.startWorker(1, nil)
	secret := filepath.Join(t.TempDir(), "secret")
	os.MkdirAll(secret, 0o755)
	os.WriteFile(filepath.Join(secret, "key"), []byte("do not upload me"), 0o644)
	up := strings.Repeat("../", 20)
	// The worker creates out/abs and out/relkey (parents of outputs)
	// before the run; the action replaces them with symlinks that leave
	// the build directory.
	script := `set -e; rmdir out/abs out/relkey
ln -s ` + secret + ` out/abs; ln -s ` + up + secret + ` out/relkey; ln -s ` + up + secret + ` out/rel
mkdir d; ln -s ` + secret + ` d/inside`
	cmd := shell(script, "d", "out/abs/key", "out/rel", "out/relkey/key")
	resp := e.execute(cmd, emptyRoot(), 0)
	if resp.GetStatus().GetCode() != 0 {
		t.Fatalf("status %v", resp.GetStatus())
	}
	res := resp.GetResult()
	if res.GetExitCode() != 0 {
		t.Fatalf("exit %d, stderr %q", res.GetExitCode(), e.read(res.GetStderrDigest()))
	}
	if len(res.GetOutputFiles()) != 0 {
		t.Errorf("files read through symlinks that leave the build directory: %v", res.GetOutputFiles())
	}
	// out/rel itself is reported as the symlink it is, not followed.
	if l := res.GetOutputSymlinks(); len(l) != 1 || l[0].GetPath() != "out/rel" {
		t.Errorf("output symlinks %v", l)
	}
	// d/inside is recorded as a symlink in d's tree, never read.
	tree := &repb.Tree{}
	proto.Unmarshal(e.read(res.GetOutputDirectories()[0].GetTreeDigest()), tree)
	if s := tree.GetRoot().GetSymlinks(); len(s) != 1 || s[0].GetTarget() != secret || len(tree.GetRoot().GetFiles()) != 0 {
		t.Errorf("tree root %v", tree.GetRoot())
	}
	secretDigest := digest.FromBytes(digest.SHA256, []byte("do not upload me"))
	if missing, _ := e.store.FindMissing(context.Background(), []digest.Digest{secretDigest}); len(missing) != 1 {
		t.Error("the secret file was uploaded")
	}

	t.Run("AbsoluteOutputSymlinkIsRefused", func(t *testing.T) {
		resp := e.execute(shell(`ln -s /etc/passwd p`, "p"), emptyRoot(), 0)
		requireStatus(t, resp, codes.FailedPrecondition, `output "p" is a symlink to the absolute path "/etc/passwd"`)
	})
}

func TestTimeout(t *testing.T) {
	e := newEnv(t, nil)
	e.startWorker(1, nil)
	resp := e.execute(shell(`echo partial; trap "" TERM; sleep 100 & sleep 100`), emptyRoot(), 300*time.Millisecond)
	requireStatus(t, resp, codes.DeadlineExceeded, "timed out after 300ms")
	if got := string(e.read(resp.GetResult().GetStdoutDigest())); got != "partial\n" {
		t.Errorf("stdout %q, want the partial output", got)
	}
	t.Run("MaxTimeoutCaps", func(t *testing.T) {
		e := newEnv(t, nil)
		e.startWorker(1, func(c *worker.Config) { c.MaxTimeout = 200 * time.Millisecond })
		requireStatus(t, e.execute(shell("sleep 100"), emptyRoot(), time.Hour), codes.DeadlineExceeded, "timed out after 200ms")
	})
}

func TestCancellation(t *testing.T) {
	e := newEnv(t, nil)
	e.startWorker(1, nil)
	a := e.assignment(shell("sleep 100"), emptyRoot(), 0)
	e.send(&workerpb.ServerMessage{Kind: &workerpb.ServerMessage_Assignment{Assignment: a}})
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	e.send(&workerpb.ServerMessage{Kind: &workerpb.ServerMessage_Cancellation{Cancellation: &workerpb.Cancellation{LeaseId: a.GetLeaseId()}}})
	requireStatus(t, e.wait(a.GetLeaseId()), codes.Canceled, "")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancellation took %v", d)
	}
}

// TestAssignmentBeyondFreeSlotsWaits: the server frees a cancelled lease's slot at once
// and may assign the next lease while the worker is still killing the cancelled action;
// that lease waits for the slot and then runs normally.
func TestAssignmentBeyondFreeSlotsWaits(t *testing.T) {
	e := newEnv(t, nil)
	e.startWorker(1, nil)
	first := e.assignment(shell("sleep 0.5; echo first"), emptyRoot(), 0)
	second := e.assignment(shell("echo second"), emptyRoot(), 0)
	e.send(&workerpb.ServerMessage{Kind: &workerpb.ServerMessage_Assignment{Assignment: first}})
	e.send(&workerpb.ServerMessage{Kind: &workerpb.ServerMessage_Assignment{Assignment: second}})
	r1, r2 := e.wait(first.GetLeaseId()), e.wait(second.GetLeaseId())
	requireStatus(t, r1, codes.OK, "")
	requireStatus(t, r2, codes.OK, "")
	if got := string(e.read(r2.GetResult().GetStdoutDigest())); got != "second\n" {
		t.Errorf("second stdout %q", got)
	}
	end := r1.GetResult().GetExecutionMetadata().GetExecutionCompletedTimestamp().AsTime()
	if start := r2.GetResult().GetExecutionMetadata().GetExecutionStartTimestamp().AsTime(); start.Before(end) {
		t.Errorf("the second lease started at %v, before the first, holding the only slot, ended at %v", start, end)
	}
}

// TestCancelledWhileWaitingForASlot: a lease cancelled before a slot frees up never runs.
func TestCancelledWhileWaitingForASlot(t *testing.T) {
	e := newEnv(t, nil)
	e.startWorker(1, nil)
	first := e.assignment(shell("sleep 0.5"), emptyRoot(), 0)
	second := e.assignment(shell("echo second"), emptyRoot(), 0)
	e.send(&workerpb.ServerMessage{Kind: &workerpb.ServerMessage_Assignment{Assignment: first}})
	e.send(&workerpb.ServerMessage{Kind: &workerpb.ServerMessage_Assignment{Assignment: second}})
	e.send(&workerpb.ServerMessage{Kind: &workerpb.ServerMessage_Cancellation{Cancellation: &workerpb.Cancellation{LeaseId: second.GetLeaseId()}}})
	deadline := time.After(10 * time.Second)
	for {
		select {
		case u := <-e.fake.updates:
			if u.GetLeaseId() != second.GetLeaseId() {
				continue
			}
			if u.GetStage() != workerpb.LeaseUpdate_COMPLETED {
				t.Fatalf("the cancelled lease reported %v, want only COMPLETED", u.GetStage())
			}
			resp := &repb.ExecuteResponse{}
			if err := proto.Unmarshal(u.GetExecuteResponse(), resp); err != nil {
				t.Fatal(err)
			}
			requireStatus(t, resp, codes.Canceled, "")
			if resp.GetResult() != nil {
				t.Errorf("result %v, want none", resp.GetResult())
			}
			return
		case <-deadline:
			t.Fatal("no report for the cancelled lease")
		}
	}
}

func TestBadAssignments(t *testing.T) {
	e := newEnv(t, nil)
	e.startWorker(1, nil)
	t.Run("ActionBytesDoNotMatchTheDigest", func(t *testing.T) {
		a := e.assignment(shell("true"), emptyRoot(), 0)
		a.Action = append(a.Action, 0x38, 0x01) // do_not_cache = true: other bytes
		e.send(&workerpb.ServerMessage{Kind: &workerpb.ServerMessage_Assignment{Assignment: a}})
		requireStatus(t, e.wait(a.GetLeaseId()), codes.InvalidArgument, "the bytes sent hash to")
	})
	t.Run("CommandBytesDoNotMatchTheDigest", func(t *testing.T) {
		a := e.assignment(shell("true"), emptyRoot(), 0)
		a.Command = append(a.Command, 0x32, 0x00)
		e.send(&workerpb.ServerMessage{Kind: &workerpb.ServerMessage_Assignment{Assignment: a}})
		requireStatus(t, e.wait(a.GetLeaseId()), codes.InvalidArgument, "command")
	})
	t.Run("MissingProgram", func(t *testing.T) {
		cmd := shell("")
		cmd.Arguments = []string{"no-such-compiler", "-c", "x.c"}
		requireStatus(t, e.execute(cmd, emptyRoot(), 0), codes.InvalidArgument, `program "no-such-compiler" not found`)
	})
}

func TestReconnects(t *testing.T) {
	e := newEnv(t, &fakeServer{dropFirst: true})
	e.startWorker(1, nil)
	// The first session ends at once; the worker comes back.
	select {
	case <-e.fake.hellos:
	case <-time.After(10 * time.Second):
		t.Fatal("the worker did not reconnect")
	}
	if resp := e.execute(shell("true"), emptyRoot(), 0); resp.GetStatus().GetCode() != 0 {
		t.Fatalf("status %v", resp.GetStatus())
	}
}

func TestNonCanonicalDirectoryEncoding(t *testing.T) {
	// A directory whose bytes put symlinks before files: valid protobuf,
	// but not what re-encoding the message gives, so GetTree's answer
	// cannot be matched to its digest and the worker reads it by digest.
	e := newEnv(t, nil)
	e.startWorker(1, nil)
	part1, _ := proto.Marshal(&repb.Directory{Symlinks: []*repb.SymlinkNode{{Name: "s", Target: "f"}}})
	part2, _ := proto.Marshal(&repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: e.put([]byte("content\n")).Proto()}}})
	sub := e.put(append(part1, part2...))
	root := e.putProto(&repb.Directory{Directories: []*repb.DirectoryNode{{Name: "sub", Digest: sub.Proto()}}})
	resp := e.execute(shell("cat sub/s"), root, 0)
	if got := string(e.read(resp.GetResult().GetStdoutDigest())); resp.GetStatus().GetCode() != 0 || got != "content\n" {
		t.Fatalf("status %v, stdout %q", resp.GetStatus(), got)
	}
}

func TestInputDirectoriesFromTheAssignment(t *testing.T) {
	// Directories sent with the assignment are used under the digest of
	// their bytes: nothing is read for them. One that another directory
	// names but the list lacks is read from the CAS; a forged one (bytes
	// that hash to another digest) is never used in its place.
	e := newEnv(t, nil)
	e.startWorker(1, nil)
	encode := func(m proto.Message) []byte {
		data, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	real := encode(&repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: e.put([]byte("real\n")).Proto()}}})
	forged := encode(&repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: e.put([]byte("forged\n")).Proto()}}})
	shown := encode(&repb.Directory{Files: []*repb.FileNode{{Name: "g", Digest: e.put([]byte("shown\n")).Proto()}}})
	realD, shownD := e.put(real), e.put(shown)
	rootBytes := encode(&repb.Directory{Directories: []*repb.DirectoryNode{
		{Name: "a", Digest: realD.Proto()},
		{Name: "b", Digest: shownD.Proto()},
	}})
	root := e.put(rootBytes)
	a := e.assignment(shell("cat a/f b/g"), root, 0)
	a.InputDirectories = [][]byte{forged, shown, rootBytes}
	e.send(&workerpb.ServerMessage{Kind: &workerpb.ServerMessage_Assignment{Assignment: a}})
	resp := e.wait(a.GetLeaseId())
	if got := string(e.read(resp.GetResult().GetStdoutDigest())); resp.GetStatus().GetCode() != 0 || got != "real\nshown\n" {
		t.Fatalf("status %v, stdout %q", resp.GetStatus(), got)
	}
	if n, m, k := e.store.readsOf(root), e.store.readsOf(shownD), e.store.readsOf(realD); n != 0 || m != 0 || k != 1 {
		t.Errorf("reads: root %d, b %d, a %d; want 0, 0 and 1", n, m, k)
	}
}

func TestOutputsSentWithTheResult(t *testing.T) {
	// When the server allows it, small outputs travel in the COMPLETED
	// update instead of the CAS, each once, within the allowance; the
	// others are uploaded. The empty stderr goes nowhere.
	e := newEnv(t, &fakeServer{maxOutputBlobBytes: 5000})
	e.startWorker(1, nil)
	a := e.assignment(shell("echo hello; echo small > small; head -c 3000 /dev/zero > a; head -c 3000 /dev/zero > b; cp a same", "small", "a", "b", "same"), emptyRoot(), 0)
	e.send(&workerpb.ServerMessage{Kind: &workerpb.ServerMessage_Assignment{Assignment: a}})
	u := e.waitUpdate(a.GetLeaseId())
	resp := &repb.ExecuteResponse{}
	if err := proto.Unmarshal(u.GetExecuteResponse(), resp); err != nil || resp.GetResult().GetExitCode() != 0 {
		t.Fatalf("response %v, err %v", resp, err)
	}
	zeros := digest.FromBytes(digest.SHA256, make([]byte, 3000))
	sent := map[digest.Digest]bool{}
	for _, b := range u.GetOutputBlobs() {
		pb := &repb.Digest{}
		if err := proto.Unmarshal(b.GetDigest(), pb); err != nil {
			t.Fatal(err)
		}
		d, err := digest.FromProto(digest.SHA256, pb)
		if err != nil || digest.FromBytes(digest.SHA256, b.GetData()) != d || sent[d] {
			t.Fatalf("blob %v: err %v, content matches %v, sent before %v", pb, err, digest.FromBytes(digest.SHA256, b.GetData()) == d, sent[d])
		}
		sent[d] = true
	}
	stdout := digest.FromBytes(digest.SHA256, []byte("hello\n"))
	small := digest.FromBytes(digest.SHA256, []byte("small\n"))
	if len(sent) != 3 || !sent[stdout] || !sent[small] || !sent[zeros] {
		t.Errorf("sent %v, want stdout, small and the 3000 zeros once", sent)
	}
	missing, err := casclientFindMissing(e, stdout, small, zeros)
	if err != nil || len(missing) != 3 {
		t.Errorf("missing from the CAS %v, err %v; want all three: they were not uploaded", missing, err)
	}

	t.Run("BeyondTheAllowanceIsUploaded", func(t *testing.T) {
		a := e.assignment(shell("head -c 6000 /dev/zero > big", "big"), emptyRoot(), 0)
		e.send(&workerpb.ServerMessage{Kind: &workerpb.ServerMessage_Assignment{Assignment: a}})
		if u := e.waitUpdate(a.GetLeaseId()); len(u.GetOutputBlobs()) != 0 {
			t.Errorf("%d blobs sent with the result, want none", len(u.GetOutputBlobs()))
		}
		if got := len(e.read(digest.FromBytes(digest.SHA256, make([]byte, 6000)).Proto())); got != 6000 {
			t.Errorf("big: %d bytes in the CAS", got)
		}
	})
}

// casclientFindMissing asks the env's CAS which of ds it lacks.
func casclientFindMissing(e *env, ds ...digest.Digest) ([]digest.Digest, error) {
	return casclient.New(e.conn, "main", digest.SHA256, 0).FindMissing(context.Background(), ds)
}
