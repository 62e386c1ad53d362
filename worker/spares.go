package worker

import (
	"context"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync/atomic"
)

// spares keeps things the worker needs fresh for every action (build
// directories, files for the cache) made ahead of time. Creating an inode
// is the slow part of both: on ext4 on a busy VM a mkdir or a file
// creation takes 30-500 µs, while renaming takes 10-25 µs. A background
// goroutine (run) makes up to n spares under dir with make; take hands one
// out, to be renamed into place. Spares are made at start and after each
// refill, which the worker asks for once an action has reported and
// cleaned up, rather than at take: making one then would compete for the
// disk with the action that just started.
type spares struct {
	dir  string
	make func(path string) error // creates path; on failure leaves nothing
	what string                  // for logs
	log  *slog.Logger
	seq  atomic.Uint64
	// ready holds the paths of ready spares. Only run sends on it, and
	// only while it is not full, so its sends never block.
	ready chan string
	// wake asks run to top ready up; capacity 1, sends never block.
	wake chan struct{}
}

// newSpares returns spares keeping up to n things made with mk under
// dir, which must exist. Without run, take never has one.
func newSpares(dir string, n int, mk func(path string) error, what string, log *slog.Logger) *spares {
	return &spares{dir: dir, make: mk, what: what, log: log, ready: make(chan string, n), wake: make(chan struct{}, 1)}
}

// take returns the path of a ready spare, which is the caller's now, or
// false if none is ready.
func (s *spares) take() (string, bool) {
	select {
	case p := <-s.ready:
		return p, true
	default:
		return "", false
	}
}

// refill asks run to make spares until the maximum are ready again.
func (s *spares) refill() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run makes spares, at start and after each refill, until ctx ends. A
// failure is logged and retried only after the next refill; take has
// nothing to give meanwhile.
func (s *spares) run(ctx context.Context) {
	s.refill()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		for len(s.ready) < cap(s.ready) && ctx.Err() == nil {
			p := filepath.Join(s.dir, "spare-"+strconv.FormatUint(s.seq.Add(1), 10))
			if err := s.make(p); err != nil {
				s.log.Warn("could not make a spare "+s.what, "err", err)
				break
			}
			s.ready <- p
		}
	}
}
