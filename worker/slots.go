package worker

import "sync"

// slotQueue hands out a worker's slots to its leases in the order they were
// assigned. The server may assign a lease before the worker has a free slot
// for it: it frees a cancelled lease's slot at once, while the worker is
// still killing that action's processes. The new lease then waits here (in
// assignment order, which is the server's priority order) instead of
// overloading the machine or failing. It is safe for concurrent use.
type slotQueue struct {
	mu      sync.Mutex
	free    int             // slots nobody holds; 0 while anyone waits
	waiting []chan struct{} // callers waiting for a slot, oldest first
}

func newSlotQueue(n int) *slotQueue { return &slotQueue{free: n} }

// acquire asks for a slot and returns a channel that is closed once the
// caller holds it. The caller must then either release the slot or, if it
// gives up first, call abandon with the channel.
func (q *slotQueue) acquire() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	ch := make(chan struct{})
	if q.free > 0 {
		q.free--
		close(ch)
		return ch
	}
	q.waiting = append(q.waiting, ch)
	return ch
}

// abandon withdraws a request made with acquire: it stops waiting, or, if
// the slot was granted in the meantime, releases it.
func (q *slotQueue) abandon(ch <-chan struct{}) {
	q.mu.Lock()
	for i, w := range q.waiting {
		if w == ch {
			q.waiting = append(q.waiting[:i], q.waiting[i+1:]...)
			q.mu.Unlock()
			return
		}
	}
	q.mu.Unlock()
	q.release() // it was granted
}

// release frees a held slot, handing it straight to the oldest waiter.
func (q *slotQueue) release() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.waiting) > 0 {
		close(q.waiting[0])
		q.waiting = q.waiting[1:]
		return
	}
	q.free++
}
