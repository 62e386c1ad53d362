package worker

import (
	"log/slog"
	"os"
	"path/filepath"

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

// buildDirs hands out fresh build directories: spares made ahead of time
// (see spares) renamed into place, or made on the spot when none is ready.
// A lease never gets a directory or file another lease used: whatever a
// stray process of an earlier action still writes cannot reach a later
// one.
type buildDirs struct {
	parent string // where leases' build directories live (WorkDir/build)
	spares *spares
	log    *slog.Logger
}

// newBuildDirs returns a buildDirs keeping up to n spares under spareDir,
// on the filesystem of parent. Both directories must exist. spares.fill
// makes the spares.
func newBuildDirs(parent, spareDir string, n int, log *slog.Logger) *buildDirs {
	mk := func(p string) error {
		_, err := makeBuildDir(p)
		return err
	}
	return &buildDirs{parent: parent, spares: newSpares(spareDir, n, mk, "build directory", log), log: log}
}

// take returns a fresh build directory named name under parent. The
// caller removes it when done with it.
func (b *buildDirs) take(name string) (buildDir, error) {
	dst := filepath.Join(b.parent, name)
	if s, ok := b.spares.take(); ok {
		err := os.Rename(s, dst)
		if err == nil {
			return newBuildDir(dst), nil
		}
		b.log.Warn("could not use a spare build directory", "spare", s, "err", err)
		if err := removeTree(s); err != nil {
			b.log.Warn("could not remove a spare build directory", "spare", s, "err", err)
		}
	}
	return makeBuildDir(dst)
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
			if err = createEmpty(p, 0o644); err != nil {
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

// createEmpty creates the empty file p, which must not exist.
func createEmpty(p string, mode os.FileMode) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	return f.Close()
}
