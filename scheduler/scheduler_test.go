package scheduler_test

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/scheduler"
)

// fakeClock is a Clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Short timeouts, so that tests read in whole seconds.
const (
	workerTimeout = 10 * time.Second
	grace         = 60 * time.Second
	retention     = 100 * time.Second
)

// env is one scheduler under test with its fake clock.
type env struct {
	t     *testing.T
	clock *fakeClock
	s     *scheduler.Scheduler
}

func newEnv(t *testing.T) *env {
	return newEnvWith(t, func(*scheduler.Config) {})
}

// newEnvWith lets a test change the configuration.
func newEnvWith(t *testing.T, configure func(*scheduler.Config)) *env {
	t.Helper()
	clock := newFakeClock()
	var n atomic.Int64
	cfg := scheduler.Config{
		Clock:              clock,
		NewID:              func() string { return fmt.Sprintf("id%d", n.Add(1)) },
		WorkerTimeout:      workerTimeout,
		PlatformGrace:      grace,
		CompletedRetention: retention,
	}
	configure(&cfg)
	return &env{t: t, clock: clock, s: scheduler.New(cfg)}
}

// advance moves the clock and runs the timeouts, as the driver would.
func (e *env) advance(d time.Duration) {
	e.clock.Advance(d)
	e.s.Tick()
}

// advanceAlive advances like advance, in steps, with the given workers
// heartbeating after each step so that they stay connected.
func (e *env) advanceAlive(d time.Duration, workers ...string) {
	e.t.Helper()
	for d > 0 {
		step := min(d, workerTimeout/2)
		e.advance(step)
		d -= step
		for _, id := range workers {
			if err := e.s.Heartbeat(id); err != nil {
				e.t.Fatal(err)
			}
		}
	}
}

// props parses "name=value" pairs.
func props(kv ...string) []scheduler.Property {
	var out []scheduler.Property
	for _, s := range kv {
		name, value, _ := strings.Cut(s, "=")
		out = append(out, scheduler.Property{Name: name, Value: value})
	}
	return out
}

// action returns an action whose digest is that of seed.
func action(seed string, platform ...string) scheduler.Action {
	return scheduler.Action{
		Digest:      digest.FromBytes(digest.SHA256, []byte(seed)),
		Platform:    props(platform...),
		ActionBytes: []byte("action " + seed),
	}
}

func (e *env) submit(a scheduler.Action) scheduler.OperationState {
	e.t.Helper()
	st, err := e.s.Submit(a)
	if err != nil {
		e.t.Fatalf("Submit(%s): %v", a.Digest, err)
	}
	return st
}

func (e *env) addWorker(name string, slots int, properties ...string) (string, <-chan struct{}) {
	e.t.Helper()
	id, wake, err := e.s.AddWorker(scheduler.WorkerInfo{Name: name, Slots: slots, Properties: props(properties...)})
	if err != nil {
		e.t.Fatalf("AddWorker(%s): %v", name, err)
	}
	return id, wake
}

func (e *env) poll(workerID string) scheduler.Poll {
	e.t.Helper()
	p, err := e.s.Poll(workerID)
	if err != nil {
		e.t.Fatalf("Poll(%s): %v", workerID, err)
	}
	return p
}

// pollOne polls and requires exactly one new lease.
func (e *env) pollOne(workerID string) scheduler.Lease {
	e.t.Helper()
	p := e.poll(workerID)
	if len(p.Assign) != 1 {
		e.t.Fatalf("Poll(%s) assigned %d leases, want 1", workerID, len(p.Assign))
	}
	return p.Assign[0]
}

// pollNone polls and requires no new lease.
func (e *env) pollNone(workerID string) {
	e.t.Helper()
	if p := e.poll(workerID); len(p.Assign) != 0 {
		e.t.Fatalf("Poll(%s) assigned %v, want nothing", workerID, leaseActions(p.Assign))
	}
}

func leaseActions(ls []scheduler.Lease) []string {
	var out []string
	for _, l := range ls {
		out = append(out, string(l.Action.ActionBytes))
	}
	return out
}

func (e *env) get(name string) scheduler.OperationState {
	e.t.Helper()
	st, err := e.s.Get(name)
	if err != nil {
		e.t.Fatalf("Get(%s): %v", name, err)
	}
	return st
}

func (e *env) requireStage(name string, want scheduler.Stage) scheduler.OperationState {
	e.t.Helper()
	st := e.get(name)
	if st.Stage != want {
		e.t.Fatalf("operation %s is in stage %d, want %d", name, st.Stage, want)
	}
	return st
}

// requireStatus asserts an error's code and message exactly.
func requireStatus(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	s, _ := status.FromError(err)
	if err == nil || s.Code() != code || s.Message() != msg {
		t.Fatalf("got error %v, want %s: %s", err, code, msg)
	}
}

// requireResult asserts that an operation completed with this status.
func requireResult(t *testing.T, st scheduler.OperationState, code codes.Code, msg string) {
	t.Helper()
	if st.Stage != scheduler.StageCompleted {
		t.Fatalf("operation %s is in stage %d, want completed", st.Name, st.Stage)
	}
	got := st.Response.GetStatus()
	if codes.Code(got.GetCode()) != code || got.GetMessage() != msg {
		t.Fatalf("operation %s completed with %v, want %s: %s", st.Name, got, code, msg)
	}
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func okResponse(exitCode int32) *repb.ExecuteResponse {
	return &repb.ExecuteResponse{Result: &repb.ActionResult{ExitCode: exitCode}}
}

func TestMatching(t *testing.T) {
	for _, tc := range []struct {
		name     string
		worker   []string
		platform []string
		runs     bool
		msg      string // the FailedPrecondition after the grace period, when !runs
	}{
		// An exact (name, value) pair matches.
		{"ExactPair", []string{"OSFamily=linux"}, []string{"OSFamily=linux"}, true, ""},
		// Another value of the same name does not.
		{"OtherValue", []string{"OSFamily=linux"}, []string{"OSFamily=windows"}, false, "no worker offers OSFamily=windows"},
		// Values are compared exactly, not by prefix or case.
		{"NoPrefix", []string{"OSFamily=linux"}, []string{"OSFamily=Linux"}, false, "no worker offers OSFamily=Linux"},
		// A worker may offer several values for one name; any of them matches.
		{"SeveralValuesOneName", []string{"ISA=x86-64", "ISA=x86-64-v3"}, []string{"ISA=x86-64-v3"}, true, ""},
		// An action may ask for several values of one name; the worker needs all.
		{"ActionNeedsBothValues", []string{"ISA=x86-64", "ISA=x86-64-v3"}, []string{"ISA=x86-64", "ISA=x86-64-v3"}, true, ""},
		{"ActionNeedsMissingValue", []string{"ISA=x86-64"}, []string{"ISA=x86-64", "ISA=x86-64-v3"}, false, "no worker offers ISA=x86-64-v3"},
		// An empty platform runs anywhere.
		{"EmptyPlatform", []string{"OSFamily=linux"}, nil, true, ""},
		{"EmptyPlatformBareWorker", nil, nil, true, ""},
		// Extra worker properties do not matter; missing ones do.
		{"SubsetOfWorker", []string{"OSFamily=linux", "cpu=arm64", "pool=big"}, []string{"OSFamily=linux", "cpu=arm64"}, true, ""},
		{"PropertyUnknownToWorker", []string{"OSFamily=linux"}, []string{"OSFamily=linux", "gpu=a100"}, false, "no worker offers gpu=a100"},
		// An empty value is a value like any other.
		{"EmptyValue", []string{"sandbox="}, []string{"sandbox="}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.advance(grace) // past start-up: a mismatch is final
			id, _ := e.addWorker("w", 1, tc.worker...)
			a := action(tc.name, tc.platform...)
			st, err := e.s.Submit(a)
			if !tc.runs {
				requireStatus(t, err, codes.FailedPrecondition, tc.msg)
				return
			}
			if err != nil {
				t.Fatalf("Submit: %v", err)
			}
			l := e.pollOne(id)
			if l.Action.Digest != a.Digest {
				t.Fatalf("lease runs %s, want %s", l.Action.Digest, a.Digest)
			}
			e.requireStage(st.Name, scheduler.StageQueued)
		})
	}
}

func TestNoWorkerMessages(t *testing.T) {
	for _, tc := range []struct {
		name     string
		workers  [][]string
		platform []string
		msg      string
	}{
		// No worker at all.
		{"NoWorkers", nil, []string{"OSFamily=linux"}, "no worker is connected"},
		{"NoWorkersEmptyPlatform", nil, nil, "no worker is connected"},
		// Every property that no worker offers is named.
		{"TwoMissing", [][]string{{"OSFamily=linux"}}, []string{"OSFamily=windows", "cpu=arm64"}, "no worker offers OSFamily=windows, cpu=arm64"},
		// Each property is offered, but by different workers.
		{"NotTogether", [][]string{{"OSFamily=linux"}, {"cpu=arm64"}}, []string{"OSFamily=linux", "cpu=arm64"}, "no worker offers all of {OSFamily=linux, cpu=arm64}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.advance(grace)
			for i, w := range tc.workers {
				e.addWorker(fmt.Sprintf("w%d", i), 1, w...)
			}
			_, err := e.s.Submit(action("a", tc.platform...))
			requireStatus(t, err, codes.FailedPrecondition, tc.msg)
		})
	}
}

func TestPlatformGrace(t *testing.T) {
	t.Run("UnavailableAfterStartThenFailedPrecondition", func(t *testing.T) {
		// Right after start-up workers may still be connecting: retry later.
		e := newEnv(t)
		a := action("a", "OSFamily=windows")
		_, err := e.s.Submit(a)
		requireStatus(t, err, codes.Unavailable, "no worker can run platform {OSFamily=windows} yet")
		e.advance(grace - time.Nanosecond)
		e.addWorker("linux", 1, "OSFamily=linux")
		_, err = e.s.Submit(a)
		requireStatus(t, err, codes.Unavailable, "no worker can run platform {OSFamily=windows} yet")
		e.advance(time.Nanosecond)
		_, err = e.s.Submit(a)
		requireStatus(t, err, codes.FailedPrecondition, "no worker offers OSFamily=windows")
	})
	t.Run("UnavailableAfterLastMatchingWorkerLeft", func(t *testing.T) {
		// A matching worker that just left (restart, blip) may come back.
		e := newEnv(t)
		e.advance(2 * grace)
		id, _ := e.addWorker("win", 1, "OSFamily=windows", "cpu=x86")
		e.advance(time.Second)
		e.s.RemoveWorker(id)
		a := action("a", "OSFamily=windows")
		e.advance(grace - time.Second)
		_, err := e.s.Submit(a)
		requireStatus(t, err, codes.Unavailable, "no worker can run platform {OSFamily=windows} yet")
		e.advance(time.Second)
		_, err = e.s.Submit(a)
		requireStatus(t, err, codes.FailedPrecondition, "no worker is connected")
	})
	t.Run("NonMatchingGoneWorkerDoesNotExtendGrace", func(t *testing.T) {
		e := newEnv(t)
		e.advance(2 * grace)
		id, _ := e.addWorker("linux", 1, "OSFamily=linux")
		e.s.RemoveWorker(id)
		_, err := e.s.Submit(action("a", "OSFamily=windows"))
		requireStatus(t, err, codes.FailedPrecondition, "no worker is connected")
	})
	t.Run("WorkerArrivesDuringGrace", func(t *testing.T) {
		e := newEnv(t)
		a := action("a", "OSFamily=windows")
		_, err := e.s.Submit(a)
		requireStatus(t, err, codes.Unavailable, "no worker can run platform {OSFamily=windows} yet")
		e.advance(time.Second)
		id, _ := e.addWorker("win", 1, "OSFamily=windows")
		e.submit(a)
		e.pollOne(id)
	})
}

func TestUnsortedPlatform(t *testing.T) {
	// REAPI requires sorted properties; we reject rather than re-sort.
	e := newEnv(t)
	e.addWorker("w", 1, "OSFamily=linux", "cpu=arm64")
	for _, tc := range []struct {
		name     string
		platform []string
		msg      string
	}{
		{"ByName", []string{"cpu=arm64", "OSFamily=linux"}, "platform property OSFamily=linux comes after cpu=arm64: properties must be sorted by name, then value"},
		{"ByValue", []string{"cpu=b", "cpu=a"}, "platform property cpu=a comes after cpu=b: properties must be sorted by name, then value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.s.Submit(action("a", tc.platform...))
			requireStatus(t, err, codes.InvalidArgument, tc.msg)
		})
	}
}

func TestDeduplication(t *testing.T) {
	t.Run("ConcurrentSubmitsShareOneLease", func(t *testing.T) {
		e := newEnv(t)
		id, _ := e.addWorker("w", 2)
		a := action("a")
		op1 := e.submit(a)
		op2 := e.submit(a)
		if op1.Name == op2.Name {
			t.Fatalf("both operations are named %s", op1.Name)
		}
		p := e.poll(id)
		if len(p.Assign) != 1 {
			t.Fatalf("Poll assigned %d leases, want 1 for two deduplicated operations", len(p.Assign))
		}
		lease := p.Assign[0].ID
		if err := e.s.Started(id, lease); err != nil {
			t.Fatal(err)
		}
		for _, op := range []scheduler.OperationState{op1, op2} {
			if !closed(op.Changed) {
				t.Fatalf("Changed of %s not closed by Started", op.Name)
			}
			e.requireStage(op.Name, scheduler.StageExecuting)
		}
		resp := okResponse(0)
		if err := e.s.Complete(id, lease, resp); err != nil {
			t.Fatal(err)
		}
		for _, op := range []scheduler.OperationState{op1, op2} {
			if st := e.requireStage(op.Name, scheduler.StageCompleted); st.Response != resp {
				t.Fatalf("operation %s got response %v, want the lease's", op.Name, st.Response)
			}
		}
	})
	t.Run("JoinRunningTask", func(t *testing.T) {
		// A submit that joins a started task is executing at once.
		e := newEnv(t)
		id, _ := e.addWorker("w", 1)
		a := action("a")
		e.submit(a)
		l := e.pollOne(id)
		if st := e.submit(a); st.Stage != scheduler.StageQueued {
			t.Fatalf("joining an assigned task: stage %d, want queued", st.Stage)
		}
		if err := e.s.Started(id, l.ID); err != nil {
			t.Fatal(err)
		}
		if st := e.submit(a); st.Stage != scheduler.StageExecuting {
			t.Fatalf("joining a started task: stage %d, want executing", st.Stage)
		}
		if st := e.s.Stats(); st.Executing != 1 || st.Operations != 3 {
			t.Fatalf("stats %+v, want one lease for three operations", st)
		}
	})
	t.Run("NewTaskAfterCompletion", func(t *testing.T) {
		// A finished task is no longer joined: its result went to the cache.
		e := newEnv(t)
		id, _ := e.addWorker("w", 1)
		a := action("a")
		e.submit(a)
		l := e.pollOne(id)
		if err := e.s.Complete(id, l.ID, okResponse(0)); err != nil {
			t.Fatal(err)
		}
		e.submit(a)
		e.pollOne(id)
	})
	t.Run("DoNotCacheIsNotDeduplicated", func(t *testing.T) {
		e := newEnv(t)
		id, _ := e.addWorker("w", 3)
		a := action("a")
		a.DoNotCache = true
		e.submit(a)
		e.submit(a)
		// A cacheable submit does not join a do_not_cache task either.
		b := a
		b.DoNotCache = false
		e.submit(b)
		if p := e.poll(id); len(p.Assign) != 3 {
			t.Fatalf("Poll assigned %d leases, want 3", len(p.Assign))
		}
	})
	t.Run("InstancesAreSeparate", func(t *testing.T) {
		e := newEnv(t)
		id, _ := e.addWorker("w", 2)
		a := action("a")
		e.submit(a)
		a.Instance = "other"
		e.submit(a)
		if p := e.poll(id); len(p.Assign) != 2 {
			t.Fatalf("Poll assigned %d leases, want 2", len(p.Assign))
		}
	})
}

func TestPriorities(t *testing.T) {
	t.Run("LowerFirstThenFIFO", func(t *testing.T) {
		e := newEnv(t)
		id, _ := e.addWorker("w", 1)
		for _, p := range []struct {
			seed     string
			priority int32
		}{{"p5", 5}, {"p1-first", 1}, {"p3", 3}, {"p1-second", 1}, {"p-2", -2}} {
			a := action(p.seed)
			a.Priority = p.priority
			e.submit(a)
			e.clock.Advance(time.Second)
		}
		var got []string
		for range 5 {
			l := e.pollOne(id)
			got = append(got, string(l.Action.ActionBytes))
			if err := e.s.Complete(id, l.ID, okResponse(0)); err != nil {
				t.Fatal(err)
			}
		}
		want := "action p-2,action p1-first,action p1-second,action p3,action p5"
		if strings.Join(got, ",") != want {
			t.Fatalf("ran %v, want %s", got, want)
		}
	})
	t.Run("JoiningRaisesPriority", func(t *testing.T) {
		// A task runs at the most urgent priority of its operations.
		e := newEnv(t)
		id, _ := e.addWorker("w", 1, "pool=a")
		lo, hi := action("lo"), action("hi")
		lo.Priority, hi.Priority = 10, 5
		e.submit(lo)
		e.submit(hi)
		lo.Priority = 1
		e.submit(lo)
		if l := e.pollOne(id); l.Action.Digest != lo.Digest || l.Action.Priority != 1 {
			t.Fatalf("first lease runs %s at priority %d, want %s at 1", l.Action.Digest, l.Action.Priority, lo.Digest)
		}
	})
	t.Run("CancellingTheUrgentOperationLowersPriority", func(t *testing.T) {
		e := newEnv(t)
		id, _ := e.addWorker("w", 1)
		x, y := action("x"), action("y")
		x.Priority, y.Priority = 10, 5
		e.submit(x)
		e.submit(y)
		x.Priority = 1
		urgent := e.submit(x)
		if err := e.s.Cancel(urgent.Name); err != nil {
			t.Fatal(err)
		}
		if l := e.pollOne(id); l.Action.Digest != y.Digest {
			t.Fatalf("first lease runs %s, want %s", l.Action.Digest, y.Digest)
		}
	})
	t.Run("OlderNotStarvedAcrossQueues", func(t *testing.T) {
		// A worker serving two queues takes the older head of equal
		// priority, however many newer tasks arrive in the other queue;
		// only a more urgent priority goes first.
		e := newEnv(t)
		id, _ := e.addWorker("w", 1, "OSFamily=linux", "pool=big")
		e.submit(action("blocker"))
		blocker := e.pollOne(id)
		e.submit(action("old", "pool=big"))
		e.submit(action("old2", "pool=big"))
		for i := range 3 {
			e.clock.Advance(time.Second)
			e.submit(action(fmt.Sprint("new", i), "OSFamily=linux"))
		}
		urgent := action("urgent", "OSFamily=linux")
		urgent.Priority = -1
		e.submit(urgent)
		var got []string
		for l := blocker; ; {
			if err := e.s.Complete(id, l.ID, okResponse(0)); err != nil {
				t.Fatal(err)
			}
			p := e.poll(id)
			if len(p.Assign) == 0 {
				break
			}
			l = p.Assign[0]
			got = append(got, string(l.Action.ActionBytes))
		}
		want := "action urgent,action old,action old2,action new0,action new1,action new2"
		if strings.Join(got, ",") != want {
			t.Fatalf("ran %v, want %s", got, want)
		}
	})
	t.Run("FIFOAcrossQueues", func(t *testing.T) {
		e := newEnv(t)
		id, _ := e.addWorker("w", 1, "OSFamily=linux", "pool=big")
		var want []string
		for i := range 6 {
			platform := "OSFamily=linux"
			if i%3 == 0 {
				platform = "pool=big"
			}
			a := action(fmt.Sprint("a", i), platform)
			if i == 4 {
				a.Instance = "other" // a third queue
			}
			e.submit(a)
			want = append(want, string(a.ActionBytes))
			e.clock.Advance(time.Millisecond)
		}
		var got []string
		for range want {
			l := e.pollOne(id)
			got = append(got, string(l.Action.ActionBytes))
			if err := e.s.Complete(id, l.ID, okResponse(0)); err != nil {
				t.Fatal(err)
			}
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("ran %v, want %v", got, want)
		}
	})
}

func TestSlots(t *testing.T) {
	e := newEnv(t)
	id, _ := e.addWorker("w", 2)
	for i := range 3 {
		e.submit(action(fmt.Sprint(i)))
	}
	p := e.poll(id)
	if len(p.Assign) != 2 {
		t.Fatalf("Poll assigned %d leases to 2 slots", len(p.Assign))
	}
	e.pollNone(id)
	if err := e.s.Complete(id, p.Assign[1].ID, okResponse(0)); err != nil {
		t.Fatal(err)
	}
	e.pollOne(id)
	e.pollNone(id)
	st := e.s.Stats()
	if len(st.Workers) != 1 || st.Workers[0].Busy != 2 || st.Workers[0].Slots != 2 || st.Queued != 0 || st.Executing != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestAddWorkerNeedsSlots(t *testing.T) {
	e := newEnv(t)
	_, _, err := e.s.AddWorker(scheduler.WorkerInfo{Name: "w", Slots: 0})
	requireStatus(t, err, codes.InvalidArgument, `worker "w" offers 0 slots, want at least 1`)
}

func TestWorkerLoss(t *testing.T) {
	t.Run("SilenceLosesLeasesToAnotherWorker", func(t *testing.T) {
		e := newEnv(t)
		a, _ := e.addWorker("a", 1)
		op := e.submit(action("x"))
		first := e.pollOne(a)
		if err := e.s.Started(a, first.ID); err != nil {
			t.Fatal(err)
		}
		b, wakeB := e.addWorker("b", 1)
		// Heartbeats and other calls keep a worker alive.
		e.advance(workerTimeout - time.Second)
		for _, id := range []string{a, b} {
			if err := e.s.Heartbeat(id); err != nil {
				t.Fatal(err)
			}
		}
		e.advance(workerTimeout - time.Second)
		if err := e.s.Heartbeat(b); err != nil {
			t.Fatal(err)
		}
		running := e.requireStage(op.Name, scheduler.StageExecuting)
		// Then a goes silent.
		e.advance(time.Second)
		if !closed(running.Changed) {
			t.Fatal("Changed not closed when the lease was lost")
		}
		e.requireStage(op.Name, scheduler.StageQueued)
		if !closed(wakeB) {
			t.Fatal("b was not woken for the requeued task")
		}
		requireStatus(t, e.s.Heartbeat(a), codes.NotFound, "worker "+a+" not found (lost or never connected)")
		_, err := e.s.Poll(a)
		requireStatus(t, err, codes.NotFound, "worker "+a+" not found (lost or never connected)")
		second := e.pollOne(b)
		if second.ID == first.ID || !second.Queued.Equal(first.Queued) {
			t.Fatalf("requeued lease %+v, want a new id and the original queued time %v", second, first.Queued)
		}
	})
	t.Run("RemoveWorkerRequeuesAtFrontOfItsClass", func(t *testing.T) {
		// b serves both queues, a only the second. An older task of the same
		// priority waits in the first queue while a runs a younger one; when
		// a is lost, the younger one goes first.
		e := newEnv(t)
		b, _ := e.addWorker("b", 1, "pool=big", "pool=small")
		busy := action("busy", "pool=big")
		e.submit(busy)
		busyLease := e.pollOne(b)
		older := action("older", "pool=big")
		e.submit(older)
		e.clock.Advance(time.Second)
		a, _ := e.addWorker("a", 1, "pool=small")
		younger := action("younger", "pool=small")
		e.submit(younger)
		e.pollOne(a)
		e.s.RemoveWorker(a)
		if err := e.s.Complete(b, busyLease.ID, okResponse(0)); err != nil {
			t.Fatal(err)
		}
		if l := e.pollOne(b); l.Action.Digest != younger.Digest {
			t.Fatalf("b got %s, want the requeued %s", l.Action.ActionBytes, younger.ActionBytes)
		}
		// A more urgent class still goes before a requeued task.
		e.s.RemoveWorker(b)
		c, _ := e.addWorker("c", 1, "pool=small")
		urgent := action("urgent", "pool=small")
		urgent.Priority = -1
		e.submit(urgent)
		if l := e.pollOne(c); l.Action.Digest != urgent.Digest {
			t.Fatalf("c got %s, want %s", l.Action.ActionBytes, urgent.ActionBytes)
		}
	})
	t.Run("MaxAttemptsThenGiveUp", func(t *testing.T) {
		e := newEnv(t)
		id, _ := e.addWorker("w1", 1)
		a := action("x")
		op := e.submit(a)
		op2 := e.submit(a)
		for i, name := range []string{"w1", "w2", "w1"} {
			if i > 0 {
				id, _ = e.addWorker(name, 1)
			}
			e.pollOne(id)
			if i < 2 {
				e.s.RemoveWorker(id)
				e.requireStage(op.Name, scheduler.StageQueued)
			} else {
				e.advance(workerTimeout) // lost by silence this time
			}
		}
		for _, o := range []scheduler.OperationState{op, op2} {
			requireResult(t, e.get(o.Name), codes.Unavailable, "action was lost with 3 workers (w1, w2, last: w1); giving up")
		}
		// The action can be submitted again, as a new task.
		e.advance(time.Second)
		id, _ = e.addWorker("w3", 1)
		e.submit(a)
		e.pollOne(id)
	})
	t.Run("OneAttempt", func(t *testing.T) {
		e := newEnvWith(t, func(c *scheduler.Config) { c.MaxAttempts = 1 })
		id, _ := e.addWorker("solo", 1)
		op := e.submit(action("x"))
		e.pollOne(id)
		e.s.RemoveWorker(id)
		requireResult(t, e.get(op.Name), codes.Unavailable, "action was lost with 1 worker (last: solo); giving up")
	})
	t.Run("LateCompleteFromLostLeaseIsIgnored", func(t *testing.T) {
		e := newEnv(t)
		a, _ := e.addWorker("a", 1)
		op := e.submit(action("x"))
		lost := e.pollOne(a)
		e.s.RemoveWorker(a)
		b, _ := e.addWorker("b", 1)
		current := e.pollOne(b)
		if err := e.s.Started(b, current.ID); err != nil {
			t.Fatal(err)
		}
		requireStatus(t, e.s.Complete(a, lost.ID, okResponse(1)), codes.FailedPrecondition,
			"lease "+lost.ID+" is no longer current for worker "+a)
		requireStatus(t, e.s.Started(a, lost.ID), codes.FailedPrecondition,
			"lease "+lost.ID+" is no longer current for worker "+a)
		// Nor may another worker report it.
		requireStatus(t, e.s.Complete(b, lost.ID, okResponse(1)), codes.FailedPrecondition,
			"lease "+lost.ID+" is no longer current for worker "+b)
		requireStatus(t, e.s.Complete(a, current.ID, okResponse(1)), codes.FailedPrecondition,
			"lease "+current.ID+" is no longer current for worker "+a)
		e.requireStage(op.Name, scheduler.StageExecuting)
		if err := e.s.Complete(b, current.ID, okResponse(0)); err != nil {
			t.Fatal(err)
		}
		if st := e.requireStage(op.Name, scheduler.StageCompleted); st.Response.GetResult().GetExitCode() != 0 {
			t.Fatalf("response %v, want b's", st.Response)
		}
		// Completing twice is refused too and changes nothing.
		requireStatus(t, e.s.Complete(b, current.ID, okResponse(1)), codes.FailedPrecondition,
			"lease "+current.ID+" is no longer current for worker "+b)
		if st := e.get(op.Name); st.Response.GetResult().GetExitCode() != 0 {
			t.Fatalf("response %v changed by a second Complete", st.Response)
		}
	})
	t.Run("RemoveUnknownWorker", func(t *testing.T) {
		e := newEnv(t)
		e.s.RemoveWorker("nobody")
	})
}

func TestQueuedTaskFailsWithoutWorker(t *testing.T) {
	t.Run("Fails", func(t *testing.T) {
		e := newEnv(t)
		e.advance(2 * grace)
		a, _ := e.addWorker("linux", 1, "OSFamily=linux")
		win, _ := e.addWorker("windows", 1, "OSFamily=windows")
		op := e.submit(action("x", "OSFamily=linux"))
		e.pollOne(a)
		e.s.RemoveWorker(a) // requeued, but nobody left can run it
		e.advanceAlive(grace-time.Nanosecond, win)
		e.requireStage(op.Name, scheduler.StageQueued)
		e.advance(time.Nanosecond)
		requireResult(t, e.get(op.Name), codes.FailedPrecondition, "no worker offers OSFamily=linux")
		if st := e.s.Stats(); st.Queued != 0 {
			t.Fatalf("stats %+v, want nothing queued", st)
		}
	})
	t.Run("WorkerReturnsInTime", func(t *testing.T) {
		e := newEnv(t)
		a, _ := e.addWorker("linux", 1, "OSFamily=linux")
		op := e.submit(action("x", "OSFamily=linux"))
		e.pollOne(a)
		e.s.RemoveWorker(a)
		e.advance(grace - time.Second)
		a, _ = e.addWorker("linux", 1, "OSFamily=linux")
		e.advance(2 * time.Second) // past the deadline it had without a worker
		e.requireStage(op.Name, scheduler.StageQueued)
		e.pollOne(a)
	})
}

func TestIdleQueues(t *testing.T) {
	t.Run("DroppedAfterIdling", func(t *testing.T) {
		// An empty queue is kept a while, then dropped.
		e := newEnv(t)
		id, _ := e.addWorker("w", 1, "OSFamily=linux")
		e.submit(action("x", "OSFamily=linux"))
		e.advanceAlive(time.Hour, id)
		if st := e.s.Stats(); len(st.Queues) != 1 {
			t.Fatalf("queues %+v, want the one with a queued task", st.Queues)
		}
		e.pollOne(id)
		e.advanceAlive(4*time.Minute, id)
		if st := e.s.Stats(); len(st.Queues) != 1 || st.Queues[0].Queued != 0 {
			t.Fatalf("queues %+v, want the idle queue", st.Queues)
		}
		e.advanceAlive(time.Hour, id)
		if st := e.s.Stats(); len(st.Queues) != 0 {
			t.Fatalf("queues %+v, want none", st.Queues)
		}
	})
	t.Run("RequeueIntoDroppedQueue", func(t *testing.T) {
		// A long action outlives its idle queue; when its worker is lost
		// the queue comes back, and with no worker left it fails after
		// the grace period.
		e := newEnv(t)
		e.advance(2 * grace)
		id, _ := e.addWorker("w", 1, "OSFamily=linux")
		other, _ := e.addWorker("other", 1)
		op := e.submit(action("x", "OSFamily=linux"))
		e.pollOne(id)
		e.advanceAlive(time.Hour, id, other)
		if st := e.s.Stats(); len(st.Queues) != 0 {
			t.Fatalf("queues %+v, want none", st.Queues)
		}
		e.s.RemoveWorker(id)
		e.advanceAlive(grace-time.Nanosecond, other)
		if st := e.s.Stats(); st.Queued != 1 || st.Queues[0].Workers != 0 {
			t.Fatalf("stats %+v, want one task waiting without a worker", st)
		}
		e.advance(time.Nanosecond)
		requireResult(t, e.get(op.Name), codes.FailedPrecondition, "no worker offers OSFamily=linux")
	})
}

func TestCancel(t *testing.T) {
	cancelled := "cancelled by the client"
	t.Run("Queued", func(t *testing.T) {
		e := newEnv(t)
		e.addWorker("idle", 1, "pool=x") // can run it, never polls
		op := e.submit(action("x"))
		if err := e.s.Cancel(op.Name); err != nil {
			t.Fatal(err)
		}
		if !closed(op.Changed) {
			t.Fatal("Changed not closed by Cancel")
		}
		requireResult(t, e.get(op.Name), codes.Canceled, cancelled)
		id, _ := e.addWorker("w", 1)
		e.pollNone(id)
		// Cancelling again, or a completed operation, does nothing.
		if err := e.s.Cancel(op.Name); err != nil {
			t.Fatal(err)
		}
		requireStatus(t, e.s.Cancel("nope"), codes.NotFound, "operation nope not found")
	})
	t.Run("Executing", func(t *testing.T) {
		// The worker is told once; its slot is free at once; a later report
		// for the lease is refused like one for a lost lease.
		e := newEnv(t)
		id, wake := e.addWorker("w", 1)
		op := e.submit(action("x"))
		<-wake
		l := e.pollOne(id)
		if err := e.s.Started(id, l.ID); err != nil {
			t.Fatal(err)
		}
		next := e.submit(action("next"))
		if err := e.s.Cancel(op.Name); err != nil {
			t.Fatal(err)
		}
		if !closed(wake) {
			t.Fatal("worker not woken for the cancellation")
		}
		p := e.poll(id)
		if len(p.Cancel) != 1 || p.Cancel[0] != l.ID {
			t.Fatalf("Poll cancels %v, want [%s]", p.Cancel, l.ID)
		}
		if len(p.Assign) != 1 || p.Assign[0].Action.Digest != action("next").Digest {
			t.Fatalf("Poll assigns %v, want the next action in the freed slot", leaseActions(p.Assign))
		}
		if p := e.poll(id); len(p.Cancel) != 0 {
			t.Fatalf("cancellation reported twice: %v", p.Cancel)
		}
		requireStatus(t, e.s.Complete(id, l.ID, okResponse(0)), codes.FailedPrecondition,
			"lease "+l.ID+" is no longer current for worker "+id)
		requireResult(t, e.get(op.Name), codes.Canceled, cancelled)
		e.requireStage(next.Name, scheduler.StageQueued)
	})
	t.Run("OneOfTwoDeduplicated", func(t *testing.T) {
		e := newEnv(t)
		id, _ := e.addWorker("w", 1)
		a := action("x")
		op1, op2 := e.submit(a), e.submit(a)
		l := e.pollOne(id)
		if err := e.s.Cancel(op1.Name); err != nil {
			t.Fatal(err)
		}
		if p := e.poll(id); len(p.Cancel) != 0 {
			t.Fatalf("lease cancelled though %s still waits for it", op2.Name)
		}
		resp := okResponse(0)
		if err := e.s.Complete(id, l.ID, resp); err != nil {
			t.Fatal(err)
		}
		requireResult(t, e.get(op1.Name), codes.Canceled, cancelled)
		if st := e.requireStage(op2.Name, scheduler.StageCompleted); st.Response != resp {
			t.Fatalf("response %v, want the worker's", st.Response)
		}
	})
	t.Run("OneOfTwoDeduplicatedWhileQueued", func(t *testing.T) {
		e := newEnv(t)
		a := action("x")
		e.addWorker("idle", 1, "pool=x") // can run it, never polls
		op1, op2 := e.submit(a), e.submit(a)
		if err := e.s.Cancel(op1.Name); err != nil {
			t.Fatal(err)
		}
		id, _ := e.addWorker("w", 1)
		e.pollOne(id)
		e.requireStage(op2.Name, scheduler.StageQueued)
	})
}

func TestRetention(t *testing.T) {
	e := newEnv(t)
	id, _ := e.addWorker("w", 1)
	op := e.submit(action("x"))
	l := e.pollOne(id)
	e.advance(time.Second)
	if err := e.s.Complete(id, l.ID, okResponse(0)); err != nil {
		t.Fatal(err)
	}
	e.advance(retention - time.Nanosecond)
	done := e.requireStage(op.Name, scheduler.StageCompleted)
	e.advance(time.Nanosecond)
	if !closed(done.Changed) {
		t.Fatal("Changed not closed when the operation expired")
	}
	_, err := e.s.Get(op.Name)
	requireStatus(t, err, codes.NotFound, "operation "+op.Name+" not found")
	requireStatus(t, e.s.Cancel(op.Name), codes.NotFound, "operation "+op.Name+" not found")
}

// TestAddCompleted: an operation answered without running (an action-cache hit) can be
// fetched by name until its retention ends, like any other.
func TestAddCompleted(t *testing.T) {
	e := newEnv(t)
	a := action("cached")
	st := e.s.AddCompleted("main", a.Digest, okResponse(0))
	if st.Stage != scheduler.StageCompleted || st.Instance != "main" || st.Action != a.Digest || st.Response.GetResult().GetExitCode() != 0 {
		t.Fatalf("AddCompleted returned %+v", st)
	}
	e.advance(retention - time.Nanosecond)
	requireResult(t, e.requireStage(st.Name, scheduler.StageCompleted), codes.OK, "")
	if err := e.s.Cancel(st.Name); err != nil {
		t.Errorf("Cancel of a completed operation: %v, want nothing to happen", err)
	}
	e.advance(time.Nanosecond)
	_, err := e.s.Get(st.Name)
	requireStatus(t, err, codes.NotFound, "operation "+st.Name+" not found")
	if s := e.s.Stats(); s.Operations != 0 || s.Completed != 0 {
		t.Errorf("Stats after retention: %d operations, %d completed; want none", s.Operations, s.Completed)
	}
}

func TestWake(t *testing.T) {
	e := newEnv(t)
	linux, wakeLinux := e.addWorker("linux", 1, "OSFamily=linux")
	_, wakeWin := e.addWorker("windows", 1, "OSFamily=windows")
	if closed(wakeLinux) || closed(wakeWin) {
		t.Fatal("woken with nothing to do")
	}
	e.submit(action("a", "OSFamily=linux"))
	if !closed(wakeLinux) {
		t.Fatal("not woken for matching work")
	}
	if closed(wakeWin) {
		t.Fatal("woken for work it cannot run")
	}
	l := e.pollOne(linux)
	// No free slot: no wake-up for more work.
	e.submit(action("b", "OSFamily=linux"))
	if closed(wakeLinux) {
		t.Fatal("woken while all its slots are busy")
	}
	// A freed slot with work queued wakes it.
	if err := e.s.Complete(linux, l.ID, okResponse(0)); err != nil {
		t.Fatal(err)
	}
	if !closed(wakeLinux) {
		t.Fatal("not woken when a slot freed up with work queued")
	}
	// A worker that connects while work waits is woken at once.
	e.submit(action("c", "OSFamily=linux"))
	_, wakeLate := e.addWorker("late", 1, "OSFamily=linux")
	if !closed(wakeLate) {
		t.Fatal("new worker not woken for waiting work")
	}
}

func TestGetUnknown(t *testing.T) {
	e := newEnv(t)
	_, err := e.s.Get("nope")
	requireStatus(t, err, codes.NotFound, "operation nope not found")
}

func TestStats(t *testing.T) {
	e := newEnv(t)
	id, _ := e.addWorker("w", 2, "cpu=x86", "OSFamily=linux")
	e.addWorker("v", 1, "OSFamily=linux")
	e.submit(action("a", "OSFamily=linux"))
	e.submit(action("b", "OSFamily=linux", "cpu=x86"))
	b := action("b", "OSFamily=linux", "cpu=x86")
	b.Instance = "main"
	e.submit(b)
	e.pollOne(e.s.Stats().Workers[0].ID) // v: "a" is all it can run
	st := e.s.Stats()
	want := scheduler.Stats{
		Queued: 2,
		Queues: []scheduler.QueueStats{
			{Instance: "", Platform: "{OSFamily=linux}", Queued: 0, Workers: 2},
			{Instance: "", Platform: "{OSFamily=linux, cpu=x86}", Queued: 1, Workers: 1},
			{Instance: "main", Platform: "{OSFamily=linux, cpu=x86}", Queued: 1, Workers: 1},
		},
		Executing:  1,
		Operations: 3,
	}
	got := st
	got.Workers = nil
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("stats\n got %+v\nwant %+v", got, want)
	}
	if len(st.Workers) != 2 || st.Workers[1].ID != id || st.Workers[1].Name != "w" ||
		fmt.Sprint(st.Workers[1].Properties) != "[{OSFamily linux} {cpu x86}]" || st.Workers[0].Busy != 1 {
		t.Fatalf("workers %+v", st.Workers)
	}
}

func TestNextDeadline(t *testing.T) {
	e := newEnv(t)
	if _, ok := e.s.NextDeadline(); ok {
		t.Fatal("a deadline with nothing pending")
	}
	start := e.clock.Now()
	id, _ := e.addWorker("w", 1)
	if at, ok := e.s.NextDeadline(); !ok || !at.Equal(start.Add(workerTimeout)) {
		t.Fatalf("NextDeadline = %v, %v; want the worker's deadline %v", at, ok, start.Add(workerTimeout))
	}
	// A removed worker's entry no longer counts.
	e.s.RemoveWorker(id)
	if at, ok := e.s.NextDeadline(); ok {
		t.Fatalf("NextDeadline = %v after the worker left, want none", at)
	}
}

func TestNewRequiresClockAndIDs(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("New without a clock did not panic")
		}
	}()
	scheduler.New(scheduler.Config{})
}

// TestConcurrentUse runs clients and workers at once under the race
// detector; every operation must end completed.
func TestConcurrentUse(t *testing.T) {
	e := newEnv(t)
	const workers, clients, perClient = 3, 4, 50
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range workers {
		id, wake := e.addWorker(fmt.Sprint("w", i), 2)
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-wake:
				case <-time.After(time.Millisecond):
				}
				p, err := e.s.Poll(id)
				if err != nil {
					t.Error(err)
					return
				}
				for _, l := range p.Assign {
					_ = e.s.Started(id, l.ID)
					_ = e.s.Complete(id, l.ID, okResponse(0))
				}
			}
		})
	}
	var cg sync.WaitGroup
	for c := range clients {
		cg.Go(func() {
			for i := range perClient {
				a := action(fmt.Sprint(i % 10)) // plenty of deduplication
				a.Priority = int32(c)
				op, err := e.s.Submit(a)
				if err != nil {
					t.Error(err)
					return
				}
				if i%7 == 0 {
					_ = e.s.Cancel(op.Name)
				}
				for op.Stage != scheduler.StageCompleted {
					<-op.Changed
					if op, err = e.s.Get(op.Name); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	cg.Wait()
	close(stop)
	wg.Wait()
	if st := e.s.Stats(); st.Operations != 0 || st.Queued != 0 || st.Executing != 0 {
		t.Fatalf("stats after the run: %+v", st)
	}
}
