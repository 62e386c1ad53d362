package execution_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	lrpb "cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// waitForFile is a script fragment that blocks until $MARKS/name exists.
func waitForFile(name string) string {
	return `while [ ! -e "$MARKS/` + name + `" ]; do sleep 0.02; done; `
}

// touch creates name in the marks directory.
func (h *harness) touch(name string) {
	h.t.Helper()
	if err := os.WriteFile(filepath.Join(h.marks, name), nil, 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// waitFor polls cond every 10ms for up to 20s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// started is an Execute call running in the background.
type started struct {
	first *lrpb.Operation // the first operation the stream sent
	done  chan struct{}
	op    *lrpb.Operation // the last operation; set when done is closed
	err   error
}

// start calls Execute, waits for the first operation (the action is then queued, or
// joined to a running task), and reads the rest of the stream in the background.
func (h *harness) start(ctx context.Context, req *repb.ExecuteRequest) *started {
	h.t.Helper()
	stream, err := h.exec.Execute(ctx, req)
	if err != nil {
		h.t.Fatalf("Execute: %v", err)
	}
	s := &started{done: make(chan struct{})}
	if s.first, err = stream.Recv(); err != nil {
		h.t.Fatalf("Execute: first operation: %v", err)
	}
	s.op = s.first
	go func() {
		defer close(s.done)
		if s.first.GetDone() {
			return
		}
		s.op, s.err = lastOperation(stream)
	}()
	return s
}

// wait returns the final response of a started call.
func (s *started) wait(t *testing.T) *repb.ExecuteResponse {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(time.Minute):
		t.Fatalf("operation %s did not complete within a minute", s.first.GetName())
	}
	if s.err != nil {
		t.Fatalf("operation %s: %v", s.first.GetName(), s.err)
	}
	return executeResponse(t, s.op)
}

// TestConcurrentExecuteRunsOnce: many clients asking for the same action at once share one
// run, and every one of them gets its result.
func TestConcurrentExecuteRunsOnce(t *testing.T) {
	const clients = 8
	h := newHarness(t, 4)
	// The action waits for the test, so every Execute arrives while it is queued or running.
	action := h.action(actionSpec{cmd: h.shell(waitForFile("go") + `echo x >> "$MARKS/runs"; echo shared`)})
	var wg sync.WaitGroup
	resps := make([]*repb.ExecuteResponse, clients)
	errs := make([]error, clients)
	for i := range clients {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			op, err := h.execute(ctx, request(action))
			if err != nil {
				errs[i] = err
				return
			}
			resps[i] = executeResponse(t, op)
		})
	}
	waitFor(t, "all clients wait on one task", func() bool {
		st := h.sched.Stats()
		return st.Operations == clients && st.Queued+st.Executing == 1
	})
	h.touch("go")
	wg.Wait()
	for i := range clients {
		if errs[i] != nil {
			t.Fatalf("client %d: %v", i, errs[i])
		}
		resp := resps[i]
		if c := codes.Code(resp.GetStatus().GetCode()); c != codes.OK || resp.GetResult().GetExitCode() != 0 {
			t.Errorf("client %d: status %v, exit code %d; want OK, 0", i, c, resp.GetResult().GetExitCode())
			continue
		}
		if got := string(h.read(resp.GetResult().GetStdoutDigest())); got != "shared\n" {
			t.Errorf("client %d: stdout %q", i, got)
		}
	}
	if n := h.runner.runs.Load(); n != 1 {
		t.Errorf("the runner ran %d commands, want 1", n)
	}
	if got := h.mark("runs"); got != "x\n" {
		t.Errorf("the action ran %d times, want once", strings.Count(got, "x"))
	}
}

// TestPriorities: with one slot, queued actions run most urgent first (lower priority
// value), and in submission order within one priority, whatever order they came in.
func TestPriorities(t *testing.T) {
	h := newHarness(t, 1)
	ctx := context.Background()
	run := func(name string, priority int32, wait bool) *started {
		script := `echo ` + name + ` >> "$MARKS/order"`
		if wait {
			script = waitForFile("go") + script
		}
		req := request(h.action(actionSpec{cmd: h.shell(script)}))
		req.ExecutionPolicy = &repb.ExecutionPolicy{Priority: priority}
		return h.start(ctx, req)
	}
	// The blocker takes the only slot until the test lets it go.
	blocker := run("blocker", 0, true)
	waitFor(t, "the blocker runs", func() bool { return h.sched.Stats().Executing == 1 })
	// Queued in this order while the slot is busy; each start returns once queued.
	calls := []*started{
		run("lazy1", 10, false),
		run("lazy2", 10, false),
		run("normal", 0, false),
		run("urgent", -5, false),
	}
	if st := h.sched.Stats(); st.Queued != len(calls) {
		t.Fatalf("%d actions queued, want %d", st.Queued, len(calls))
	}
	h.touch("go")
	for _, c := range append(calls, blocker) {
		if resp := c.wait(t); resp.GetResult().GetExitCode() != 0 {
			t.Fatalf("operation %s: %v", c.first.GetName(), resp)
		}
	}
	if got, want := h.mark("order"), "blocker\nurgent\nnormal\nlazy1\nlazy2\n"; got != want {
		t.Errorf("ran in order %q, want %q", got, want)
	}
}

// TestCancelOperation: cancelling the only operation of a running action kills its
// process tree, and the operation completes CANCELLED (in ExecuteResponse.status, not
// Operation.error). GetOperation then reports the same.
func TestCancelOperation(t *testing.T) {
	h := newHarness(t, 2)
	action := h.action(actionSpec{cmd: h.shell(treeScript)})
	call := h.start(context.Background(), request(action))
	name := call.first.GetName()
	waitFor(t, "the action runs", func() bool { return h.mark("child") != "" })
	pids := h.pids()

	if _, err := h.ops.CancelOperation(context.Background(), &lrpb.CancelOperationRequest{Name: name}); err != nil {
		t.Fatalf("CancelOperation: %v", err)
	}
	resp := call.wait(t)
	if c := codes.Code(resp.GetStatus().GetCode()); c != codes.Canceled {
		t.Errorf("status %v %q, want CANCELLED", c, resp.GetStatus().GetMessage())
	}
	waitGone(t, pids...)

	op, err := h.ops.GetOperation(context.Background(), &lrpb.GetOperationRequest{Name: name})
	if err != nil {
		t.Fatalf("GetOperation after cancelling: %v", err)
	}
	if c := codes.Code(executeResponse(t, op).GetStatus().GetCode()); c != codes.Canceled {
		t.Errorf("GetOperation: status %v, want CANCELLED", c)
	}
	h.requireNotCached(action)
	// The slot is free again: the next action runs.
	if resp := h.mustExecute(request(h.action(actionSpec{cmd: h.shell("true")}))); resp.GetResult().GetExitCode() != 0 {
		t.Errorf("an action after the cancelled one: %v", resp)
	}
}

// TestCancelFreesSlotForQueuedAction: with one slot, cancelling the running action lets
// the next queued one run, and run normally: the server frees the slot at once, while the
// worker may still be killing the cancelled action's processes.
func TestCancelFreesSlotForQueuedAction(t *testing.T) {
	h := newHarness(t, 1)
	running := h.start(context.Background(), request(h.action(actionSpec{cmd: h.shell(treeScript)})))
	waitFor(t, "the first action runs", func() bool { return h.mark("child") != "" })
	next := h.start(context.Background(), request(h.action(actionSpec{cmd: h.shell("echo next")})))
	if _, err := h.ops.CancelOperation(context.Background(), &lrpb.CancelOperationRequest{Name: running.first.GetName()}); err != nil {
		t.Fatalf("CancelOperation: %v", err)
	}
	if c := codes.Code(running.wait(t).GetStatus().GetCode()); c != codes.Canceled {
		t.Errorf("cancelled action: status %v, want CANCELLED", c)
	}
	resp := next.wait(t)
	if c := codes.Code(resp.GetStatus().GetCode()); c != codes.OK || resp.GetResult().GetExitCode() != 0 {
		t.Fatalf("the queued action: status %v %q, exit code %d; want OK, 0",
			c, resp.GetStatus().GetMessage(), resp.GetResult().GetExitCode())
	}
	if got := string(h.read(resp.GetResult().GetStdoutDigest())); got != "next\n" {
		t.Errorf("stdout %q", got)
	}
	waitGone(t, h.pids()...)
}

// TestCancelQueuedOrSharedOperation: a cancelled operation whose action is still queued
// never runs; one of two operations sharing an action can be cancelled while the other
// still gets the result of the one run.
func TestCancelQueuedOrSharedOperation(t *testing.T) {
	h := newHarness(t, 1)
	ctx := context.Background()
	// Two clients ask for the shared action, which holds the only slot until "go".
	shared := request(h.action(actionSpec{cmd: h.shell(waitForFile("go") + `echo x >> "$MARKS/shared"; echo shared`)}))
	keep, drop := h.start(ctx, shared), h.start(ctx, shared)
	waitFor(t, "the shared action runs", func() bool { return h.sched.Stats().Executing == 1 })
	queued := h.start(ctx, request(h.action(actionSpec{cmd: h.shell(`echo x >> "$MARKS/queued"`)})))

	for _, c := range []*started{drop, queued} {
		if _, err := h.ops.CancelOperation(ctx, &lrpb.CancelOperationRequest{Name: c.first.GetName()}); err != nil {
			t.Fatalf("CancelOperation: %v", err)
		}
		if code := codes.Code(c.wait(t).GetStatus().GetCode()); code != codes.Canceled {
			t.Errorf("operation %s: status %v, want CANCELLED", c.first.GetName(), code)
		}
	}
	h.touch("go")
	resp := keep.wait(t)
	if code := codes.Code(resp.GetStatus().GetCode()); code != codes.OK || resp.GetResult().GetExitCode() != 0 {
		t.Fatalf("the operation that was not cancelled: status %v, exit code %d; want OK, 0", code, resp.GetResult().GetExitCode())
	}
	if got := h.mark("shared"); got != "x\n" {
		t.Errorf("the shared action ran %d times, want once", strings.Count(got, "x"))
	}
	// The slot is free and nothing is queued: the cancelled action is gone for good.
	h.mustExecute(request(h.action(actionSpec{cmd: h.shell("true")})))
	if got := h.mark("queued"); got != "" {
		t.Errorf("the cancelled queued action ran")
	}
	if n := h.runner.runs.Load(); n != 2 {
		t.Errorf("the runner ran %d commands, want 2", n)
	}
}

// TestWaitExecutionAfterDisconnect: a client whose Execute stream breaks comes back with
// WaitExecution and the operation's name and gets the result; the action ran once.
func TestWaitExecutionAfterDisconnect(t *testing.T) {
	h := newHarness(t, 2)
	action := h.action(actionSpec{cmd: h.shell(waitForFile("go") + `echo x >> "$MARKS/runs"; echo result`)})
	ctx, cancel := context.WithCancel(context.Background())
	call := h.start(ctx, request(action))
	name := call.first.GetName()
	waitFor(t, "the action runs", func() bool {
		op, err := h.ops.GetOperation(context.Background(), &lrpb.GetOperationRequest{Name: name})
		return err == nil && stage(t, op) == repb.ExecutionStage_EXECUTING
	})
	cancel() // the client goes away mid-Execute
	<-call.done
	if status.Code(call.err) != codes.Canceled {
		t.Fatalf("the abandoned Execute stream ended with %v, want CANCELLED on the client", call.err)
	}
	// The server keeps the operation going without the client.
	time.Sleep(100 * time.Millisecond)
	op, err := h.ops.GetOperation(context.Background(), &lrpb.GetOperationRequest{Name: name})
	if err != nil {
		t.Fatalf("GetOperation: %v", err)
	}
	if op.GetDone() || stage(t, op) != repb.ExecutionStage_EXECUTING {
		t.Fatalf("GetOperation while running: done %v, stage %v; want not done, EXECUTING", op.GetDone(), stage(t, op))
	}

	stream, err := h.exec.WaitExecution(context.Background(), &repb.WaitExecutionRequest{Name: name})
	if err != nil {
		t.Fatalf("WaitExecution: %v", err)
	}
	h.touch("go")
	op, err = lastOperation(stream)
	if err != nil {
		t.Fatalf("WaitExecution: %v", err)
	}
	if op.GetName() != name {
		t.Errorf("WaitExecution returned operation %q, want %q", op.GetName(), name)
	}
	resp := executeResponse(t, op)
	if got := string(h.read(resp.GetResult().GetStdoutDigest())); got != "result\n" {
		t.Errorf("stdout %q, want %q", got, "result\n")
	}
	if got := h.mark("runs"); got != "x\n" {
		t.Errorf("the action ran %d times, want once", strings.Count(got, "x"))
	}

	// GetOperation after the end has the response too.
	op, err = h.ops.GetOperation(context.Background(), &lrpb.GetOperationRequest{Name: name})
	if err != nil {
		t.Fatalf("GetOperation after completion: %v", err)
	}
	if got := executeResponse(t, op).GetResult().GetStdoutDigest(); got.GetHash() != resp.GetResult().GetStdoutDigest().GetHash() {
		t.Errorf("GetOperation: stdout %v, want %v", got, resp.GetResult().GetStdoutDigest())
	}
}

// TestUnknownOperation: names the server never issued are NOT_FOUND.
func TestUnknownOperation(t *testing.T) {
	h := newHarness(t, 1)
	_, err := h.ops.GetOperation(context.Background(), &lrpb.GetOperationRequest{Name: "no-such-operation"})
	requireStatus(t, err, codes.NotFound, "no-such-operation")
	stream, err := h.exec.WaitExecution(context.Background(), &repb.WaitExecutionRequest{Name: "no-such-operation"})
	if err == nil {
		_, err = lastOperation(stream)
	}
	requireStatus(t, err, codes.NotFound, "no-such-operation")
	_, err = h.ops.CancelOperation(context.Background(), &lrpb.CancelOperationRequest{Name: "no-such-operation"})
	requireStatus(t, err, codes.NotFound, "no-such-operation")
}

// TestCachedOperationCanBeFetched: the operation of an Execute answered from the action
// cache has a name too, and a client that lost the stream can fetch it by that name.
func TestCachedOperationCanBeFetched(t *testing.T) {
	h := newHarness(t, 1)
	action := h.action(actionSpec{cmd: h.shell("echo cached")})
	h.mustExecute(request(action))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	op, err := h.execute(ctx, request(action))
	if err != nil {
		t.Fatal(err)
	}
	if !executeResponse(t, op).GetCachedResult() {
		t.Fatal("the second Execute was not answered from the cache")
	}
	got, err := h.ops.GetOperation(ctx, &lrpb.GetOperationRequest{Name: op.GetName()})
	if err != nil {
		t.Fatalf("GetOperation(%q): %v", op.GetName(), err)
	}
	if !executeResponse(t, got).GetCachedResult() {
		t.Errorf("GetOperation(%q): not the cached result", op.GetName())
	}
	stream, err := h.exec.WaitExecution(ctx, &repb.WaitExecutionRequest{Name: op.GetName()})
	if err == nil {
		op, err = lastOperation(stream)
	}
	if err != nil {
		t.Fatalf("WaitExecution(%q): %v", op.GetName(), err)
	}
	if !executeResponse(t, op).GetCachedResult() {
		t.Errorf("WaitExecution(%q): not the cached result", op.GetName())
	}
}
