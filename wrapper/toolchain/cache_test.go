package toolchain_test

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/kiln-build/kiln/wrapper/toolchain"
)

func TestLoadOrCapture(t *testing.T) {
	ctx := context.Background()
	f := newFakeRoot(t)
	c := f.capturer()
	cache := filepath.Join(t.TempDir(), "cache")

	first, err := c.LoadOrCapture(ctx, cache, "/usr/bin/gcc")
	if err != nil {
		t.Fatal(err)
	}
	if first.FromCache || f.queries.Load() != 1 {
		t.Fatalf("first call: FromCache %v, %d captures", first.FromCache, f.queries.Load())
	}

	t.Run("SecondCallReadsTheCache", func(t *testing.T) {
		second, err := c.LoadOrCapture(ctx, cache, "/usr/bin/gcc")
		if err != nil {
			t.Fatal(err)
		}
		if !second.FromCache || f.queries.Load() != 1 {
			t.Fatalf("FromCache %v, %d captures", second.FromCache, f.queries.Load())
		}
		second.FromCache = false
		if !reflect.DeepEqual(first.Files, second.Files) || !reflect.DeepEqual(first.Symlinks, second.Symlinks) ||
			first.Root != second.Root || first.PathEnv != second.PathEnv || !reflect.DeepEqual(first.LibraryPath, second.LibraryPath) ||
			first.Compiler != second.Compiler || first.TotalBytes != second.TotalBytes || len(first.Directories) != len(second.Directories) {
			t.Fatalf("cached tree differs:\n%+v\n%+v", first, second)
		}
	})

	recaptured := func(t *testing.T) *toolchain.Tree {
		t.Helper()
		before := f.queries.Load()
		tr, err := c.LoadOrCapture(ctx, cache, "/usr/bin/gcc")
		if err != nil {
			t.Fatal(err)
		}
		if tr.FromCache || f.queries.Load() != before+1 {
			t.Fatalf("not recaptured: FromCache %v", tr.FromCache)
		}
		return tr
	}
	t.Run("ChangedLibraryIsNoticed", func(t *testing.T) {
		// Binutils upgraded under the same gcc: the driver's key is the
		// same, the stat of each file is not.
		lib := filepath.Join(f.dir, "usr/lib/x86_64-linux-gnu/libweird.so.1.0")
		if err := os.WriteFile(lib, []byte("weirder"), 0o755); err != nil {
			t.Fatal(err)
		}
		if tr := recaptured(t); tr.Root == first.Root {
			t.Fatal("same root after a library changed")
		}
	})
	t.Run("ChangedSymlinkIsNoticed", func(t *testing.T) {
		f.file(t, "usr/lib/x86_64-linux-gnu/libc-2.37.so", []byte("libc 2.37"))
		f.link(t, "usr/lib/x86_64-linux-gnu/libc.so.6", "libc-2.37.so")
		recaptured(t)
	})
	t.Run("TouchedFileIsNoticed", func(t *testing.T) {
		as := filepath.Join(f.dir, "usr/bin/x86_64-linux-gnu-as")
		later := time.Now().Add(time.Hour)
		if err := os.Chtimes(as, later, later); err != nil {
			t.Fatal(err)
		}
		recaptured(t)
	})
	t.Run("CorruptCacheIsReplaced", func(t *testing.T) {
		names, _ := filepath.Glob(filepath.Join(cache, "toolchain-*.json"))
		if len(names) != 1 {
			t.Fatalf("cache files %q", names)
		}
		if err := os.WriteFile(names[0], []byte("{not json"), 0o644); err != nil {
			t.Fatal(err)
		}
		recaptured(t)
		if tr, err := c.LoadOrCapture(ctx, cache, "/usr/bin/gcc"); err != nil || !tr.FromCache {
			t.Fatalf("not cached again: %v", err)
		}
	})
	t.Run("ConcurrentCallersCaptureOnce", func(t *testing.T) {
		// make -j64 starts many kiln cc at once; one captures.
		fresh := filepath.Join(t.TempDir(), "cache")
		before := f.queries.Load()
		var wg sync.WaitGroup
		roots := make([]string, 8)
		for i := range roots {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tr, err := c.LoadOrCapture(ctx, fresh, "/usr/bin/gcc")
				if err != nil {
					t.Error(err)
					return
				}
				roots[i] = tr.Root.String()
			}()
		}
		wg.Wait()
		if n := f.queries.Load() - before; n != 1 {
			t.Fatalf("%d captures", n)
		}
		for _, r := range roots {
			if r != roots[0] {
				t.Fatalf("roots differ: %q", roots)
			}
		}
	})
	t.Run("CancelledWhileWaitingForTheLock", func(t *testing.T) {
		fresh := filepath.Join(t.TempDir(), "cache")
		slow := *c
		started, release := make(chan struct{}), make(chan struct{})
		slow.Run = func(ctx context.Context, name string, args ...string) ([]byte, error) {
			if args[0] == "-print-prog-name=cc1" {
				close(started)
				<-release
			}
			return c.Run(ctx, name, args...)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			slow.LoadOrCapture(ctx, fresh, "/usr/bin/gcc")
		}()
		defer func() { <-done }()
		<-started
		cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		_, err := c.LoadOrCapture(cctx, fresh, "/usr/bin/gcc")
		close(release)
		requireStatus(t, err, codes.DeadlineExceeded, "context deadline exceeded")
	})
}
