package scheduler

import (
	"container/heap"
	"time"
)

// A timeoutTarget owns timeout entries: a worker (its heartbeat deadline),
// a queue (idle removal, or failing its tasks when no worker can run them)
// or a completed operation (the end of its retention).
//
// Entries are never removed from the heap when they stop mattering. Instead
// each carries the generation of its target at the time it was pushed; the
// target bumps its generation to disown older entries (lazy deletion), and
// fire ignores an entry whose generation is not current.
type timeoutTarget interface {
	// live reports whether an entry pushed with gen still matters.
	live(gen uint64) bool
	// fire runs a due entry. s.mu is held and s.now is the current time.
	// It may push new entries, including ones already due.
	fire(s *Scheduler, gen uint64)
}

// timeout is one entry of the heap.
type timeout struct {
	at     time.Time
	seq    uint64 // breaks ties by push order, so expiry is deterministic
	target timeoutTarget
	gen    uint64
}

// timeoutHeap is a min-heap of timeouts ordered by (at, seq). It implements
// heap.Interface; use push, peek and pop.
type timeoutHeap struct {
	entries []timeout
	seq     uint64
}

func (h *timeoutHeap) Len() int { return len(h.entries) }

func (h *timeoutHeap) Less(i, j int) bool {
	a, b := &h.entries[i], &h.entries[j]
	if c := a.at.Compare(b.at); c != 0 {
		return c < 0
	}
	return a.seq < b.seq
}

func (h *timeoutHeap) Swap(i, j int) { h.entries[i], h.entries[j] = h.entries[j], h.entries[i] }

// Push and Pop are for container/heap only.
func (h *timeoutHeap) Push(x any) { h.entries = append(h.entries, x.(timeout)) }

func (h *timeoutHeap) Pop() any {
	n := len(h.entries) - 1
	e := h.entries[n]
	h.entries[n] = timeout{} // drop the target pointer
	h.entries = h.entries[:n]
	return e
}

// push schedules target.fire(gen) at at.
func (h *timeoutHeap) push(at time.Time, target timeoutTarget, gen uint64) {
	h.seq++
	heap.Push(h, timeout{at: at, seq: h.seq, target: target, gen: gen})
}

// dropStale pops disowned entries off the top, so that the top, if any, is
// live.
func (h *timeoutHeap) dropStale() {
	for len(h.entries) > 0 && !h.entries[0].target.live(h.entries[0].gen) {
		heap.Pop(h)
	}
}

// runUntil fires, in order, every entry due at or before now, including
// entries pushed by the ones it fires. s.mu must be held.
func (h *timeoutHeap) runUntil(s *Scheduler, now time.Time) {
	for len(h.entries) > 0 && !h.entries[0].at.After(now) {
		e := heap.Pop(h).(timeout)
		if e.target.live(e.gen) {
			e.target.fire(s, e.gen)
		}
	}
}

// next returns the time of the earliest live entry.
func (h *timeoutHeap) next() (time.Time, bool) {
	h.dropStale()
	if len(h.entries) == 0 {
		return time.Time{}, false
	}
	return h.entries[0].at, true
}
