package scheduler

import (
	"container/heap"
	"slices"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// queueIdleTimeout is how long an empty queue is kept before it is
// dropped. Keeping it spares the next Submit for the same platform the
// O(workers) scan that links a new queue to its workers; dropping it bounds
// memory when clients invent instance names.
const queueIdleTimeout = 5 * time.Minute

// queueKey names a queue: tasks of one instance and one platform.
type queueKey struct {
	instance string
	platform string // platformKey of the platform
}

// queue holds the queued tasks of one (instance, platform), most urgent
// first (see taskHeap). It also links to every connected worker that
// satisfies its platform, so that enqueueing wakes exactly those workers
// and a worker's Poll looks only at queues it can serve:
//
//	queue.workers  <-->  worker.queues     (kept in step by link, loseWorker, deleteQueue)
//
// A queue lives while it has tasks and for queueIdleTimeout after it
// empties. Its one live timeout entry (generation gen) serves both of its
// deadlines: that idle removal and, while it has tasks but no worker, the
// moment those tasks fail because no worker came back within
// PlatformGrace. All fields are guarded by s.mu.
type queue struct {
	key      queueKey
	instance string
	platform []Property

	tasks   taskHeap
	workers map[*worker]struct{}

	// emptySince is when tasks last became empty; noWorkerSince is when
	// workers last became empty (or, for a queue created without workers,
	// when a matching worker was last connected).
	emptySince, noWorkerSince time.Time

	gen     uint64    // generation of the live timeout entry
	armed   bool      // the live entry has not fired yet ...
	armedAt time.Time // ... and is due at armedAt
	deleted bool
}

// getQueue returns the queue for key, whose platform is platform, creating
// and linking it if needed. s.mu must be held.
func (s *Scheduler) getQueue(key queueKey, platform []Property) *queue {
	if q, ok := s.queues[key]; ok {
		return q
	}
	q := &queue{
		key:        key,
		instance:   key.instance,
		platform:   slices.Clone(platform), // the queue may outlive the caller's Action
		workers:    make(map[*worker]struct{}),
		emptySince: s.now,
	}
	for _, w := range s.workers {
		if w.props.satisfies(platform) {
			link(q, w)
		}
	}
	if len(q.workers) == 0 {
		q.noWorkerSince = s.lastMatchingSeen(platform)
	}
	s.queues[key] = q
	s.rearmQueue(q)
	return q
}

func link(q *queue, w *worker) {
	q.workers[w] = struct{}{}
	w.queues[q] = struct{}{}
}

// push enqueues t (whose priority, queued time and seq are set) and wakes
// the workers that could take it now. s.mu must be held.
func (s *Scheduler) push(q *queue, t *task) {
	t.state = taskQueued
	t.queue = q
	heap.Push(&q.tasks, t)
	if len(q.tasks) == 1 {
		s.rearmQueue(q)
	}
	for w := range q.workers {
		if w.free() > 0 {
			w.signal()
		}
	}
}

// remove takes t out of its queue. s.mu must be held.
func (s *Scheduler) remove(t *task) {
	q := t.queue
	heap.Remove(&q.tasks, t.index)
	t.queue = nil
	if len(q.tasks) == 0 {
		q.emptySince = s.now
		s.rearmQueue(q)
	}
}

// deadline returns when q next needs attention: its idle removal when it
// is empty, the failure of its tasks when no worker serves it, or none.
func (s *Scheduler) deadline(q *queue) (time.Time, bool) {
	switch {
	case len(q.tasks) == 0:
		return q.emptySince.Add(queueIdleTimeout), true
	case len(q.workers) == 0:
		return q.noWorkerSince.Add(s.cfg.PlatformGrace), true
	}
	return time.Time{}, false
}

// rearmQueue makes sure a timeout entry of q fires no later than its
// deadline. An entry that fires early, or when no deadline is left, is
// harmless: fire looks at the state again and re-arms. So a queue that
// keeps emptying and filling pushes at most one entry per idle period, not
// one per task. s.mu must be held.
func (s *Scheduler) rearmQueue(q *queue) {
	at, ok := s.deadline(q)
	if !ok || q.armed && !q.armedAt.After(at) {
		return
	}
	q.gen++ // disown the later entry
	q.armed, q.armedAt = true, at
	s.timeouts.push(at, q, q.gen)
}

func (q *queue) live(gen uint64) bool { return !q.deleted && gen == q.gen }

// fire drops an idle queue, or fails the tasks of a queue that no worker
// has served for PlatformGrace, or re-arms if neither is due yet.
func (q *queue) fire(s *Scheduler, _ uint64) {
	q.armed = false
	at, ok := s.deadline(q)
	if !ok || s.now.Before(at) {
		s.rearmQueue(q)
		return
	}
	if len(q.tasks) == 0 {
		s.deleteQueue(q)
		return
	}
	resp := failedResponse(codes.FailedPrecondition, s.noWorkerMessage(q.platform))
	for len(q.tasks) > 0 {
		t := q.tasks[0]
		s.remove(t) // the last one arms the idle removal
		s.finish(t, resp)
	}
}

func (s *Scheduler) deleteQueue(q *queue) {
	for w := range q.workers {
		delete(w.queues, q)
	}
	delete(s.queues, q.key)
	q.deleted = true
}

// taskHeap orders the tasks of one queue: lower priority value first; then
// tasks requeued after a lost lease (they go back to the front of their
// priority class); then earlier queued time (FIFO); then the order of
// submission. It implements heap.Interface and keeps task.index current
// for heap.Fix and heap.Remove.
type taskHeap []*task

// before is the order of taskHeap, also used across queues by Poll.
func before(a, b *task) bool {
	if a.priority != b.priority {
		return a.priority < b.priority
	}
	if ra, rb := a.attempts > 0, b.attempts > 0; ra != rb {
		return ra
	}
	if c := a.queued.Compare(b.queued); c != 0 {
		return c < 0
	}
	return a.seq < b.seq
}

func (h taskHeap) Len() int           { return len(h) }
func (h taskHeap) Less(i, j int) bool { return before(h[i], h[j]) }

func (h taskHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

// Push and Pop are for container/heap only.
func (h *taskHeap) Push(x any) {
	t := x.(*task)
	t.index = len(*h)
	*h = append(*h, t)
}

func (h *taskHeap) Pop() any {
	old := *h
	n := len(old) - 1
	t := old[n]
	old[n] = nil
	t.index = -1
	*h = old[:n]
	return t
}

// failedResponse is an ExecuteResponse carrying an infrastructure failure.
func failedResponse(c codes.Code, msg string) *repb.ExecuteResponse {
	return &repb.ExecuteResponse{Status: status.New(c, msg).Proto()}
}
