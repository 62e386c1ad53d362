package scheduler

import (
	"container/heap"
	"fmt"
	"strings"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"

	"github.com/kiln-build/kiln/cas/digest"
)

// taskKey is the deduplication key of a task.
type taskKey struct {
	instance string
	digest   digest.Digest
}

// taskState is where a task is. A task moves
//
//	queued --Poll--> assigned --Started--> executing --Complete--> done
//	  ^                  |                     |
//	  +--- lease lost ---+---------------------+   (attempts+1, or done at MaxAttempts)
//
// and is done, from any state, when its last operation is cancelled or
// when its queue has had no worker for PlatformGrace.
type taskState int

const (
	taskQueued taskState = iota + 1
	taskAssigned
	taskExecuting
	taskDone
)

// task is the deduplicated unit of work: one per (instance, action digest)
// while queued or running, unless the action is DoNotCache. Its operations
// are what clients wait on; they all complete together with the task's
// result. All fields are guarded by s.mu.
type task struct {
	key      taskKey
	queueKey queueKey
	dedup    bool // t is s.tasks[key]
	action   Action
	ops      []*operation

	// priority is the minimum of the priorities of ops.
	priority int32
	// queued is when the task was first queued. A requeued task keeps it,
	// so it does not lose its place to younger tasks.
	queued time.Time
	seq    uint64

	state taskState
	queue *queue // while taskQueued
	index int    // in queue.tasks, while taskQueued
	lease *lease // while taskAssigned or taskExecuting

	attempts int      // leases lost so far
	lostWith []string // names of the workers those leases were lost with
}

// stage is what the task's operations report.
func (t *task) stage() Stage {
	if t.state == taskExecuting {
		return StageExecuting
	}
	return StageQueued
}

// setPriority recomputes the priority from the operations and moves a
// queued task to its new place. s.mu must be held.
func (t *task) setPriority() {
	p := t.ops[0].priority
	for _, op := range t.ops[1:] {
		p = min(p, op.priority)
	}
	if p == t.priority {
		return
	}
	t.priority = p
	if t.state == taskQueued {
		heap.Fix(&t.queue.tasks, t.index)
	}
}

// setStage moves every operation of t to the task's stage. s.mu must be
// held.
func (s *Scheduler) setStage(t *task) {
	st := t.stage()
	for _, op := range t.ops {
		if op.stage != st {
			op.stage = st
			op.notify()
		}
	}
}

// finish completes every operation of t with resp and forgets t. The
// caller has already taken t out of its queue or released its lease. s.mu
// must be held.
func (s *Scheduler) finish(t *task, resp *repb.ExecuteResponse) {
	for _, op := range t.ops {
		s.complete(op, resp)
	}
	t.ops = nil
	t.state = taskDone
	s.forget(t)
}

// forget drops t from the deduplication index, so that the next Submit of
// the same action starts a new task. s.mu must be held.
func (s *Scheduler) forget(t *task) {
	if t.dedup {
		delete(s.tasks, t.key)
		t.dedup = false
	}
}

// lost handles a lease of t that was lost with worker name: t goes back to
// the front of its priority class, or fails once MaxAttempts leases were
// lost. The lease is already released. s.mu must be held.
func (s *Scheduler) lost(t *task, name string) {
	t.lease = nil
	t.attempts++
	t.lostWith = append(t.lostWith, name)
	if t.attempts >= s.cfg.MaxAttempts {
		s.finish(t, failedResponse(codes.Unavailable, lostMessage(t.lostWith)))
		return
	}
	s.push(s.getQueue(t.queueKey, t.action.Platform), t)
	s.setStage(t)
}

// lostMessage is "action was lost with 3 workers (a, b, last: c); giving up".
func lostMessage(names []string) string {
	last := names[len(names)-1]
	workers := "workers"
	if len(names) == 1 {
		workers = "worker"
	}
	var list string
	if len(names) > 1 {
		list = strings.Join(names[:len(names)-1], ", ") + ", "
	}
	return fmt.Sprintf("action was lost with %d %s (%slast: %s); giving up", len(names), workers, list, last)
}
