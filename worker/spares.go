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
// creation takes 30-500 µs, while renaming takes 10-25 µs. fill, which the
// worker's janitor calls at start and after each action, makes up to n
// spares under dir with make; take hands one out, to be renamed into
// place. It is safe for concurrent use, with one fill at a time.
type spares struct {
	dir  string
	make func(path string) error // creates path; on failure leaves nothing
	what string                  // for logs
	log  *slog.Logger
	seq  atomic.Uint64
	// ready holds the paths of ready spares. Only fill sends on it, and
	// only while it is not full, so its sends never block.
	ready chan string
}

// newSpares returns spares keeping up to n things made with mk under
// dir, which must exist. Until fill runs, take has none.
func newSpares(dir string, n int, mk func(path string) error, what string, log *slog.Logger) *spares {
	return &spares{dir: dir, make: mk, what: what, log: log, ready: make(chan string, n)}
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

// fill makes spares until the maximum are ready or ctx ends. A failure is
// logged and ends it: the next fill tries again, and take has nothing to
// give meanwhile.
func (s *spares) fill(ctx context.Context) {
	for len(s.ready) < cap(s.ready) && ctx.Err() == nil {
		p := filepath.Join(s.dir, "spare-"+strconv.FormatUint(s.seq.Add(1), 10))
		if err := s.make(p); err != nil {
			s.log.Warn("could not make a spare "+s.what, "err", err)
			return
		}
		s.ready <- p
	}
}
