package worker

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// buildDir is the build directory of one lease:
//
//	<dir>/root     the input root, empty when handed out
//	<dir>/stdout   empty files that the runner opens (O_TRUNC) for the
//	<dir>/stderr   command's output, outside the input root
type buildDir struct {
	dir, root, stdout, stderr string
}

func newBuildDir(dir string) buildDir {
	return buildDir{
		dir:    dir,
		root:   filepath.Join(dir, "root"),
		stdout: filepath.Join(dir, "stdout"),
		stderr: filepath.Join(dir, "stderr"),
	}
}

// buildDirs hands out fresh build directories. Creating an inode is the
// slow part of a build directory: on ext4 on a busy VM a mkdir or a file
// creation takes 30-500 µs, while renaming a directory takes 10-25 µs. So
// buildDirs keeps spares, made ahead of time by a background goroutine
// (run) under spareDir on the same filesystem, and take renames one into
// place. A lease never gets a directory or file another lease used:
// whatever a stray process of an earlier action still writes cannot reach
// a later one.
//
// Spares are replaced when a lease calls done, after it has reported and
// removed its directory, rather than at take: making one then would
// compete for the disk with the lease that just started.
type buildDirs struct {
	parent   string // where leases' build directories live (WorkDir/build)
	spareDir string // where spares are made (WorkDir/spare)
	log      *slog.Logger
	seq      atomic.Uint64
	// spares holds the paths of ready spares. Only run sends on it, and
	// only while it is not full, so its sends never block.
	spares chan string
	// wake asks run to top spares up; capacity 1, sends never block.
	wake chan struct{}
}

// newBuildDirs returns a buildDirs keeping up to n spares. Both directories
// must exist. Call run to make the spares; without it, take makes each
// directory itself.
func newBuildDirs(parent, spareDir string, n int, log *slog.Logger) *buildDirs {
	return &buildDirs{parent: parent, spareDir: spareDir, log: log, spares: make(chan string, n), wake: make(chan struct{}, 1)}
}

// take returns a fresh build directory named name under parent: a spare
// renamed into place if one is ready, else one made now. The caller
// removes it when done with it, and then calls done.
func (b *buildDirs) take(name string) (buildDir, error) {
	dst := filepath.Join(b.parent, name)
	select {
	case s := <-b.spares:
		err := os.Rename(s, dst)
		if err == nil {
			return newBuildDir(dst), nil
		}
		b.log.Warn("could not use a spare build directory", "spare", s, "err", err)
		if err := removeTree(s); err != nil {
			b.log.Warn("could not remove a spare build directory", "spare", s, "err", err)
		}
	default:
	}
	return makeBuildDir(dst)
}

// done tells b that a build directory was taken and removed: the spares
// are topped up in the background.
func (b *buildDirs) done() { b.poke() }

func (b *buildDirs) poke() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// run makes spares, at start and after each done, until the maximum are
// ready, until ctx ends. A failure is logged and retried only after the
// next done; take makes its directories itself meanwhile.
func (b *buildDirs) run(ctx context.Context) {
	b.poke()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.wake:
		}
		for len(b.spares) < cap(b.spares) && ctx.Err() == nil {
			d, err := makeBuildDir(filepath.Join(b.spareDir, strconv.FormatUint(b.seq.Add(1), 10)))
			if err != nil {
				b.log.Warn("could not make a spare build directory", "err", err)
				break
			}
			b.spares <- d.dir
		}
	}
}

// makeBuildDir creates the build directory dir (whose parent must exist)
// with an empty input root and empty stdout and stderr files. On failure
// it removes what it made.
func makeBuildDir(dir string) (buildDir, error) {
	d := newBuildDir(dir)
	err := os.Mkdir(d.dir, 0o755)
	if err != nil {
		return buildDir{}, status.Errorf(codes.Internal, "build directory: %v", err)
	}
	if err = os.Mkdir(d.root, 0o755); err == nil {
		for _, p := range []string{d.stdout, d.stderr} {
			var f *os.File
			if f, err = os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644); err != nil {
				break
			}
			if err = f.Close(); err != nil {
				break
			}
		}
	}
	if err != nil {
		removeTree(d.dir)
		return buildDir{}, status.Errorf(codes.Internal, "build directory: %v", err)
	}
	return d, nil
}
