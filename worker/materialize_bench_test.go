package worker

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/kiln-build/kiln/cas/casclient"
	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/worker/runner/runnertest"
)

// benchTree returns the toolchain tree that kiln cc sends
// (runnertest.CompilerTree) as an input tree, with its files stored in
// cache.
func benchTree(b *testing.B, cache *fileCache) *inputTree {
	b.Helper()
	dir := b.TempDir()
	err := runnertest.CompilerTree(dir)
	if errors.Is(err, runnertest.ErrNoToolchain) {
		b.Skip(err)
	}
	if err != nil {
		b.Fatal(err)
	}
	r, err := runnertest.ReadInputRoot(digest.SHA256, dir)
	if err != nil {
		b.Fatal(err)
	}
	t := &inputTree{root: r.Root, dirs: map[digest.Digest]*repb.Directory{}}
	todo := []digest.Digest{r.Root}
	for len(todo) > 0 {
		d := todo[0]
		todo = todo[1:]
		dir := &repb.Directory{}
		if err := proto.Unmarshal(r.Blobs[d], dir); err != nil {
			b.Fatal(err)
		}
		t.dirs[d] = dir
		for _, f := range dir.GetFiles() {
			fd, _ := digest.FromProto(digest.SHA256, f.GetDigest())
			if err := cache.store(cacheKey{fd, f.GetIsExecutable()}, r.Blobs[fd]); err != nil {
				b.Fatal(err)
			}
		}
		for _, sub := range dir.GetDirectories() {
			sd, _ := digest.FromProto(digest.SHA256, sub.GetDigest())
			todo = append(todo, sd)
		}
	}
	return t
}

// processCPU is the CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkMaterialize measures what a worker does per action with kiln
// cc's toolchain tree, from a warm file cache: make the build directory,
// materialize the tree in it (materialize-ms/op), give its directories to
// the sandbox user as the Sandbox runner does (chown-ms/op), and remove it
// (remove-ms/op). cpu-ms/op is the process's CPU time for all three.
func BenchmarkMaterialize(b *testing.B) {
	work := b.TempDir()
	log := slog.New(slog.DiscardHandler)
	cache, err := newFileCache(filepath.Join(work, "cache"), 1<<30, 0, log)
	if err != nil {
		b.Fatal(err)
	}
	t := benchTree(b, cache)
	w := &worker{cache: cache, log: log}
	cl := casclient.New(nil, "", digest.SHA256, 4<<20) // every file is cached: no RPC
	var mat, chown, remove time.Duration
	cpu := processCPU()
	n := 0
	for b.Loop() {
		n++
		start := time.Now()
		d, err := makeBuildDir(filepath.Join(work, fmt.Sprint("b", n)))
		if err != nil {
			b.Fatal(err)
		}
		if err := w.materialize(context.Background(), cl, t, d.root); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := filepath.WalkDir(d.root, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				err = syscall.Lchown(p, 65534, 65534)
			}
			return err
		}); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if err := removeTree(d.dir); err != nil {
			b.Fatal(err)
		}
		mat += t1.Sub(start)
		chown += t2.Sub(t1)
		remove += time.Since(t2)
	}
	ms := float64(time.Millisecond) * float64(n)
	b.ReportMetric(float64(processCPU()-cpu)/ms, "cpu-ms/op")
	b.ReportMetric(float64(mat)/ms, "materialize-ms/op")
	b.ReportMetric(float64(chown)/ms, "chown-ms/op")
	b.ReportMetric(float64(remove)/ms, "remove-ms/op")
}
