package test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	lrpb "cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kiln-build/kiln/cas/casclient"
	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/internal/grpcaddr"
)

// execInstance is the REAPI instance of the execution tests.
const execInstance = "kiln-e2e/exec"

// execClient is a REAPI client of one kiln server: it uploads actions and executes them.
type execClient struct {
	t    *testing.T
	conn *grpc.ClientConn
	cas  *casclient.Client
	exec repb.ExecutionClient
	ops  lrpb.OperationsClient
	// marks is a directory that commands can write to ($MARKS in their environment):
	// how a test sees where and how often an action ran.
	marks string
}

func newExecClient(t *testing.T, s *server) *execClient {
	t.Helper()
	conn, err := grpcaddr.Dial(s.GRPCAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &execClient{
		t:     t,
		conn:  conn,
		cas:   casclient.New(conn, execInstance, digest.SHA256, 0),
		exec:  repb.NewExecutionClient(conn),
		ops:   lrpb.NewOperationsClient(conn),
		marks: t.TempDir(),
	}
}

// putProto uploads m and returns its digest.
func (c *execClient) putProto(m proto.Message) digest.Digest {
	c.t.Helper()
	data, err := proto.Marshal(m)
	if err != nil {
		c.t.Fatal(err)
	}
	d := digest.FromBytes(digest.SHA256, data)
	if err := c.cas.Upload(context.Background(), []casclient.Blob{{Digest: d, Data: data}}); err != nil {
		c.t.Fatalf("upload %s: %v", d, err)
	}
	return d
}

// shellAction uploads an action that runs script with sh -c on an empty input root, with
// PATH set and $MARKS naming c.marks, and returns its digest. platform, if given, is
// "name=value" pairs in sorted order.
func (c *execClient) shellAction(script string, platform ...string) digest.Digest {
	c.t.Helper()
	cmd := &repb.Command{
		Arguments: []string{"sh", "-c", script},
		EnvironmentVariables: []*repb.Command_EnvironmentVariable{
			{Name: "MARKS", Value: c.marks},
			{Name: "PATH", Value: "/bin:/usr/bin"},
		},
	}
	a := &repb.Action{CommandDigest: c.putProto(cmd).Proto(), InputRootDigest: c.putProto(&repb.Directory{}).Proto()}
	if len(platform) > 0 {
		a.Platform = &repb.Platform{}
		for _, kv := range platform {
			name, value, _ := strings.Cut(kv, "=")
			a.Platform.Properties = append(a.Platform.Properties, &repb.Platform_Property{Name: name, Value: value})
		}
	}
	return c.putProto(a)
}

func execRequest(action digest.Digest) *repb.ExecuteRequest {
	return &repb.ExecuteRequest{InstanceName: execInstance, ActionDigest: action.Proto(), DigestFunction: repb.DigestFunction_SHA256}
}

// execute runs one Execute call to its end and returns the last operation, or the error
// that ended the stream.
func (c *execClient) execute(ctx context.Context, action digest.Digest) (*lrpb.Operation, error) {
	stream, err := c.exec.Execute(ctx, execRequest(action))
	if err != nil {
		return nil, err
	}
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

// mustExecute executes action and requires it to succeed with exit code 0. It returns
// the result.
func (c *execClient) mustExecute(ctx context.Context, action digest.Digest) *repb.ActionResult {
	c.t.Helper()
	op, err := c.execute(ctx, action)
	return c.requireSuccess(op, err)
}

// requireSuccess checks that an Execute call ended with a done operation whose action
// succeeded with exit code 0, and returns the result.
func (c *execClient) requireSuccess(op *lrpb.Operation, err error) *repb.ActionResult {
	c.t.Helper()
	if err != nil {
		c.t.Fatalf("Execute: %v", err)
	}
	resp := &repb.ExecuteResponse{}
	if !op.GetDone() || op.GetError() != nil || op.GetResponse().UnmarshalTo(resp) != nil {
		c.t.Fatalf("Execute: operation %v, want done with a response", op)
	}
	if st := resp.GetStatus(); codes.Code(st.GetCode()) != codes.OK || resp.GetResult().GetExitCode() != 0 {
		c.t.Fatalf("Execute: status %v, exit code %d; want OK, 0", st, resp.GetResult().GetExitCode())
	}
	return resp.GetResult()
}

// read downloads a blob.
func (c *execClient) read(pb *repb.Digest) string {
	c.t.Helper()
	d, err := digest.FromProto(digest.SHA256, pb)
	if err != nil {
		c.t.Fatal(err)
	}
	data, err := c.cas.ReadBlob(context.Background(), d)
	if err != nil {
		c.t.Fatalf("read %s: %v", d, err)
	}
	return string(data)
}

// mark returns the content of file name in the marks directory, "" if there is none.
func (c *execClient) mark(name string) string {
	c.t.Helper()
	data, err := os.ReadFile(filepath.Join(c.marks, name))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		c.t.Fatal(err)
	}
	return string(data)
}

// waitUntil polls cond every 20ms until it holds, failing t after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// connectedMessage is the msg of the log line a worker writes once the server welcomed it.
const connectedMessage = "connected to the server"

// workerProc is a `kiln worker` process started by startWorker.
type workerProc struct {
	Name    string
	WorkDir string

	cmd    *exec.Cmd
	log    *logCapture
	exited chan struct{} // closed once cmd.Wait returned; waitErr is then set
	// waitErr is cmd.Wait's result; read it only after exited is closed.
	waitErr error
}

// startWorker runs `kiln worker` for s with one slot, the given name and work directory,
// plus args, and returns once the worker has logged that the server welcomed it. When
// the test ends a worker still running gets SIGTERM and must exit with status 0. Its
// output is logged.
func startWorker(t *testing.T, s *server, name, workDir string, args ...string) *workerProc {
	t.Helper()
	w := &workerProc{Name: name, WorkDir: workDir, exited: make(chan struct{}), log: newLogCapture(connectedMessage)}
	argv := append([]string{"worker", "--server", s.GRPCURL(), "--slots", "1", "--name", name, "--work-dir", workDir}, args...)
	w.cmd = exec.Command(kilnBinary(t), argv...)
	w.cmd.Stdout = w.log
	w.cmd.Stderr = w.log
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	w.cmd.WaitDelay = 5 * time.Second
	if err := w.cmd.Start(); err != nil {
		t.Fatalf("start kiln worker: %v", err)
	}
	go func() {
		w.waitErr = w.cmd.Wait()
		close(w.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-w.exited:
		default:
			if err := w.stop(stopTimeout); err != nil {
				t.Error(err)
			}
		}
		t.Logf("kiln worker %s (pid %d) output:\n%s", name, w.cmd.Process.Pid, w.log.String())
	})
	t.Logf("started kiln %s (pid %d)", strings.Join(argv, " "), w.cmd.Process.Pid)
	select {
	case <-w.log.matched:
	case <-w.exited:
		t.Fatalf("kiln worker %s exited before logging %q: %v\n%s", name, connectedMessage, w.waitErr, w.log.String())
	case <-time.After(startupTimeout):
		t.Fatalf("kiln worker %s did not log %q within %v\n%s", name, connectedMessage, startupTimeout, w.log.String())
	}
	return w
}

// stop sends SIGTERM and waits up to timeout for the worker to exit with status 0; it
// kills the worker's process group and returns an error otherwise.
func (w *workerProc) stop(timeout time.Duration) error {
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("send SIGTERM to kiln worker %s: %w", w.Name, err)
	}
	select {
	case <-w.exited:
		if w.waitErr != nil {
			return fmt.Errorf("kiln worker %s exited with %v after SIGTERM, want status 0", w.Name, w.waitErr)
		}
		return nil
	case <-time.After(timeout):
		_ = syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
		<-w.exited
		return fmt.Errorf("kiln worker %s did not exit within %v of SIGTERM", w.Name, timeout)
	}
}

// kill sends SIGKILL to the worker process alone (not its group: what runs there is the
// worker's to clean up, as after a crash) and waits for it to die.
func (w *workerProc) kill(t *testing.T) {
	t.Helper()
	if err := w.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill kiln worker %s: %v", w.Name, err)
	}
	<-w.exited
}
