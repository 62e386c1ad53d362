package test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	lrpb "cloud.google.com/go/longrunning/autogen/longrunningpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestPlatformNoWorker: an action for a platform that no worker offers is UNAVAILABLE
// (retry later) right after the server starts, while workers may still be connecting, and
// FAILED_PRECONDITION naming the property once --platform-grace has passed.
func TestPlatformNoWorker(t *testing.T) {
	const grace = 2 * time.Second
	kilnBinary(t) // built before the clock starts
	start := time.Now()
	s := startServer(t, "--platform-grace", grace.String())
	up := time.Now() // the server started between start and up
	c := newExecClient(t, s)
	action := c.shellAction(`echo ran >> "$MARKS/ran"`, "OSFamily=plan9")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	_, err := c.execute(ctx, action)
	if time.Since(start) >= grace {
		t.Skipf("the server took %v to start and accept the action; the grace period is over", time.Since(start))
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("Execute right after start: %v, want UNAVAILABLE", err)
	}

	time.Sleep(time.Until(up.Add(grace + 100*time.Millisecond)))
	_, err = c.execute(ctx, action)
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "OSFamily=plan9") {
		t.Fatalf("Execute after the grace period: %v, want FAILED_PRECONDITION naming OSFamily=plan9", err)
	}
	t.Logf("after the grace period: %v", err)
	if m := c.mark("ran"); m != "" {
		t.Errorf("the action ran: %q", m)
	}
	// The in-process worker serves the platforms it offers all the while.
	c.mustExecute(ctx, c.shellAction("true", "OSFamily=linux"))
}

// whichWorker waits until the action has written its working directory to $MARKS/where
// n times and returns the worker whose work directory holds the last one.
func whichWorker(t *testing.T, c *execClient, n int, workers ...*workerProc) *workerProc {
	t.Helper()
	var lines []string
	waitUntil(t, 20*time.Second, "the action starts", func() bool {
		lines = strings.Fields(c.mark("where"))
		return len(lines) >= n
	})
	for _, w := range workers {
		// The worker canonicalizes its work directory; so does this comparison.
		dir, err := filepath.EvalSymlinks(w.WorkDir)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(lines[n-1], dir+string(filepath.Separator)) {
			return w
		}
	}
	t.Fatalf("the action ran in %s, below no worker's work directory", lines[n-1])
	return nil
}

// whereScript records where the action runs, then takes a few seconds. It
// writes outside its build directory, which only the unsandboxed runner
// allows: these tests are about scheduling and faults, the sandbox has its
// own tests in worker/runner.
const whereScript = `pwd >> "$MARKS/where"; sleep 3; echo finished`

// TestWorkerKilledMidAction: two `kiln worker` processes with one slot each; the one
// running an action is SIGKILLed. The server notices the broken session at once, the
// action runs again on the other worker, and the client sees plain success.
func TestWorkerKilledMidAction(t *testing.T) {
	s := startServer(t, "--workers", "0")
	w1 := startWorker(t, s, "w1", t.TempDir(), "--sandbox=none")
	w2 := startWorker(t, s, "w2", t.TempDir(), "--sandbox=none")
	c := newExecClient(t, s)
	action := c.shellAction(whereScript)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type outcome struct {
		op   *lrpb.Operation
		err  error
		took time.Duration
	}
	done := make(chan outcome, 1)
	start := time.Now()
	go func() {
		op, err := c.execute(ctx, action)
		done <- outcome{op: op, err: err, took: time.Since(start)}
	}()

	victim := whichWorker(t, c, 1, w1, w2)
	other := w1
	if victim == w1 {
		other = w2
	}
	killed := time.Now()
	victim.kill(t)
	t.Logf("killed %s running the action; %s should take over", victim.Name, other.Name)
	if w := whichWorker(t, c, 2, w1, w2); w != other {
		t.Fatalf("after %s was killed the action ran on %s, want %s", victim.Name, w.Name, other.Name)
	}
	// Requeued when the session broke, not after the 30s worker timeout.
	if d := time.Since(killed); d > 10*time.Second {
		t.Errorf("the action started on %s %v after %s was killed", other.Name, d, victim.Name)
	}
	o := <-done
	res := c.requireSuccess(o.op, o.err)
	t.Logf("Execute finished after %v", o.took)
	if got := res.GetExecutionMetadata().GetWorker(); got != other.Name {
		t.Errorf("result from worker %q, want %q", got, other.Name)
	}
	if got := c.read(res.GetStdoutDigest()); got != "finished\n" {
		t.Errorf("stdout %q, want %q", got, "finished\n")
	}
}

// TestWorkerRestart: a worker that is killed and started again (same name, same work
// directory) reconnects and runs new actions.
func TestWorkerRestart(t *testing.T) {
	s := startServer(t, "--workers", "0")
	dir := t.TempDir()
	w := startWorker(t, s, "phoenix", dir)
	c := newExecClient(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.mustExecute(ctx, c.shellAction("echo before"))

	w.kill(t)
	startWorker(t, s, "phoenix", dir)
	res := c.mustExecute(ctx, c.shellAction("echo after"))
	if got := c.read(res.GetStdoutDigest()); got != "after\n" {
		t.Errorf("stdout %q, want %q", got, "after\n")
	}
	if got := res.GetExecutionMetadata().GetWorker(); got != "phoenix" {
		t.Errorf("ran on worker %q, want phoenix", got)
	}
}

// TestWorkerSIGTERM: a worker stopped with SIGTERM exits with status 0 promptly, also in
// the middle of an action: the action's processes end with it, and the server runs the
// action on another worker.
func TestWorkerSIGTERM(t *testing.T) {
	s := startServer(t, "--workers", "0")
	t.Run("Idle", func(t *testing.T) {
		w := startWorker(t, s, "idle", t.TempDir())
		if err := w.stop(5 * time.Second); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Busy", func(t *testing.T) {
		w1 := startWorker(t, s, "busy1", t.TempDir(), "--sandbox=none")
		w2 := startWorker(t, s, "busy2", t.TempDir(), "--sandbox=none")
		c := newExecClient(t, s)
		action := c.shellAction(`echo $$ >> "$MARKS/pids"; ` + whereScript)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		type outcome struct {
			op  *lrpb.Operation
			err error
		}
		done := make(chan outcome, 1)
		go func() {
			op, err := c.execute(ctx, action)
			done <- outcome{op, err}
		}()
		victim := whichWorker(t, c, 1, w1, w2)
		pid, err := strconv.Atoi(strings.Fields(c.mark("pids"))[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := victim.stop(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(pid, 0); err == nil && !zombie(pid) {
			t.Errorf("the action's shell (pid %d) outlived its worker", pid)
		}
		o := <-done
		res := c.requireSuccess(o.op, o.err)
		if got := res.GetExecutionMetadata().GetWorker(); got == victim.Name {
			t.Errorf("the result is from %s, which was stopped while running the action", got)
		}
		if lines := strings.Fields(c.mark("where")); len(lines) != 2 {
			t.Errorf("the action ran %d times, want 2 (once on each worker)", len(lines))
		}
	})
}

// zombie reports whether pid has exited and waits to be reaped.
func zombie(pid int) bool {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	// "pid (comm) S ...": the state follows the last ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}
