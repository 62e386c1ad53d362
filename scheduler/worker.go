package scheduler

import (
	"slices"
	"time"
)

// worker is a connected worker: what it offers, its slots and its current
// leases. It is registered by AddWorker and lost by RemoveWorker or by
// staying silent past its deadline. All fields are guarded by s.mu.
type worker struct {
	id, name string
	props    propertySet
	slots    int

	leases  map[string]*lease   // current leases, each holding one slot
	queues  map[*queue]struct{} // queues whose platform it satisfies
	cancels []string            // leases to stop, reported once by Poll

	// wake has room for one signal: a session that is busy when several
	// things happen sees one wake-up and then polls for all of them.
	wake chan struct{}

	// deadline is when the worker is lost unless it is heard from. The
	// worker has one timeout entry at a time (generation gen); heartbeats
	// only move deadline, and the entry re-pushes itself when it finds
	// the deadline moved, so heartbeats do not fill the heap.
	deadline time.Time
	gen      uint64
	gone     bool
}

// lease is one attempt of a task on a worker. It is current while it is in
// s.leases; a lost or cancelled lease is not, and reports for it are
// refused.
type lease struct {
	id      string
	task    *task
	worker  *worker
	started bool
}

func (w *worker) free() int { return w.slots - len(w.leases) }

// signal wakes the worker's session without blocking.
func (w *worker) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// hasWork reports whether a queue the worker can serve has tasks.
func (w *worker) hasWork() bool {
	for q := range w.queues {
		if len(q.tasks) > 0 {
			return true
		}
	}
	return false
}

// heard extends the worker's deadline: any message counts as a heartbeat.
func (s *Scheduler) heard(w *worker) {
	w.deadline = s.now.Add(s.cfg.WorkerTimeout)
}

func (w *worker) live(gen uint64) bool { return !w.gone && gen == w.gen }

// fire loses a silent worker, or re-arms for its moved deadline.
func (w *worker) fire(s *Scheduler, gen uint64) {
	if s.now.Before(w.deadline) {
		s.timeouts.push(w.deadline, w, gen)
		return
	}
	s.loseWorker(w)
}

// loseWorker unregisters w: it no longer serves its queues, and its leases
// are lost (their tasks requeued or failed). Its session is woken so that
// it polls, gets NotFound and ends. s.mu must be held.
func (s *Scheduler) loseWorker(w *worker) {
	w.gone = true
	w.gen++
	delete(s.workers, w.id)

	// Remember when a worker with these properties was last connected:
	// Submit answers UNAVAILABLE rather than FAILED_PRECONDITION for
	// PlatformGrace after that.
	key := platformKey(w.props.sorted())
	s.gone[key] = &goneWorkers{props: w.props, seen: s.now}

	for q := range w.queues {
		delete(q.workers, w)
		if len(q.workers) == 0 {
			q.noWorkerSince = s.now
			s.rearmQueue(q)
		}
	}
	w.queues = nil

	// Requeue in lease-id order so that the outcome does not depend on map
	// iteration order.
	ids := make([]string, 0, len(w.leases))
	for id := range w.leases {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		l := w.leases[id]
		delete(s.leases, id)
		s.lost(l.task, w.name)
	}
	w.leases = nil
	w.cancels = nil
	w.signal()
}

// release ends lease l, freeing its slot. s.mu must be held.
func (s *Scheduler) release(l *lease) {
	delete(s.leases, l.id)
	delete(l.worker.leases, l.id)
	l.task.lease = nil
}
