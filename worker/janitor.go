package worker

import (
	"context"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// janitor runs the worker's housekeeping (removing build directories,
// making spares) on one goroutine, at the lowest CPU priority (nice 19 for
// its thread), and when it competes least with actions: when the next
// command starts, because the worker then only waits for it and the server
// and client wait for the worker, or after maxDelay if no command starts
// sooner. Done right after an action's report, at normal priority, the
// same work competed with the server and the client handling that report
// and the next request: kiln bench exec measured 0.3 ms more per action.
type janitor struct {
	maxDelay time.Duration
	mu       sync.Mutex
	work     []func(context.Context) // queued, oldest first; guarded by mu
	queued   chan struct{}           // capacity 1: work was queued
	kick     chan struct{}           // capacity 1: a command starts
}

func newJanitor(maxDelay time.Duration) *janitor {
	return &janitor{maxDelay: maxDelay, queued: make(chan struct{}, 1), kick: make(chan struct{}, 1)}
}

// later queues f to run soon on the janitor's goroutine. f gets the
// janitor's context, which has ended if f runs while the janitor stops.
func (j *janitor) later(f func(ctx context.Context)) {
	j.mu.Lock()
	j.work = append(j.work, f)
	j.mu.Unlock()
	select {
	case j.queued <- struct{}{}:
	default:
	}
}

// commandStarting tells the janitor that a command is about to run: a
// good time for queued work.
func (j *janitor) commandStarting() {
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

// run runs queued work until ctx ends, then once more what is queued then.
func (j *janitor) run(ctx context.Context) {
	// The thread ends with the goroutine (it is never unlocked), so its
	// priority never passes to other goroutines. Raising one's own nice
	// value needs no privilege; if it fails anyway, work runs as usual.
	runtime.LockOSThread()
	_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 19)
	defer j.runQueued(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-j.queued:
		}
		// A kick from before the work was queued is stale: the command
		// it announced started before the action that queued it ended.
		select {
		case <-j.kick:
		default:
		}
		t := time.NewTimer(j.maxDelay)
		select {
		case <-j.kick:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		j.runQueued(ctx)
	}
}

func (j *janitor) runQueued(ctx context.Context) {
	j.mu.Lock()
	work := j.work
	j.work = nil
	j.mu.Unlock()
	for _, f := range work {
		f(ctx)
	}
}
