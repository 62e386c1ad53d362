package worker

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/cas/digest"
)

// fakeFetch serves blobs from memory and counts downloads.
type fakeFetch struct {
	blobs map[digest.Digest][]byte
	n     atomic.Int32
}

func (f *fakeFetch) fetch(ctx context.Context, d digest.Digest, path string) error {
	f.n.Add(1)
	data, ok := f.blobs[d]
	if !ok {
		return status.Errorf(codes.NotFound, "blob %s", d)
	}
	return os.WriteFile(path, data, 0o644)
}

func blobOf(n int, tag string) []byte {
	b := make([]byte, n)
	copy(b, tag)
	return b
}

func TestFileCacheEvictsLeastRecentlyUsed(t *testing.T) {
	dir := t.TempDir()
	c, err := newFileCache(filepath.Join(dir, "cache"), 250, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeFetch{blobs: map[digest.Digest][]byte{}}
	keys := make([]cacheKey, 3)
	for i := range keys {
		data := blobOf(100, fmt.Sprint("blob", i))
		d := digest.FromBytes(digest.SHA256, data)
		f.blobs[d] = data
		keys[i] = cacheKey{d: d}
	}
	link := func(k cacheKey) {
		t.Helper()
		dst := filepath.Join(dir, fmt.Sprint("out", time.Now().UnixNano()))
		if err := c.link(context.Background(), k, dst, f.fetch); err != nil {
			t.Fatal(err)
		}
	}
	link(keys[0])
	link(keys[1])
	link(keys[0]) // keys[0] is now the most recently used
	link(keys[2]) // 300 bytes > 250: keys[1] goes
	if !c.has(keys[0]) || c.has(keys[1]) || !c.has(keys[2]) {
		t.Fatalf("after eviction: has 0=%v 1=%v 2=%v, want keys[1] evicted", c.has(keys[0]), c.has(keys[1]), c.has(keys[2]))
	}
	if _, err := os.Stat(c.path(keys[1])); !os.IsNotExist(err) {
		t.Errorf("evicted file still on disk: %v", err)
	}
	if n := f.n.Load(); n != 3 {
		t.Errorf("%d downloads, want 3 (the second use of keys[0] is a hit)", n)
	}

	t.Run("PinnedEntriesStay", func(t *testing.T) {
		// Pin 0, then use 2: 0 is the least recently used. Bringing 1
		// back in must evict 2, skipping the older but pinned 0.
		e := c.acquire(keys[0])
		link(keys[2])
		link(keys[1])
		if !c.has(keys[0]) || c.has(keys[2]) {
			t.Fatalf("has 0=%v 2=%v: want the pinned entry kept and keys[2] evicted", c.has(keys[0]), c.has(keys[2]))
		}
		c.release(e)
		if c.size > c.maxBytes {
			t.Errorf("size %d over the limit after release", c.size)
		}
	})

	t.Run("RestartRebuildsTheIndex", func(t *testing.T) {
		// A file with the wrong size and a stray file are removed; good
		// files are kept.
		bad := cacheKey{d: digest.FromBytes(digest.SHA256, []byte("twelve bytes"))}
		os.MkdirAll(filepath.Dir(c.path(bad)), 0o755)
		os.WriteFile(c.path(bad), []byte("short"), 0o444)
		stray := filepath.Join(c.dir, "ab", "junk")
		os.MkdirAll(filepath.Dir(stray), 0o755)
		os.WriteFile(stray, nil, 0o644)
		c2, err := newFileCache(c.dir, 250, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if c2.has(k) != c.has(k) {
				t.Errorf("after restart has(%s)=%v, before %v", k.d, c2.has(k), c.has(k))
			}
		}
		if c2.has(bad) || c2.size != c.size {
			t.Errorf("restart kept a bad file (size %d, want %d)", c2.size, c.size)
		}
		for _, p := range []string{c.path(bad), stray} {
			if _, err := os.Lstat(p); !os.IsNotExist(err) {
				t.Errorf("%s survived the restart", p)
			}
		}
	})
}

func TestFileCacheModes(t *testing.T) {
	dir := t.TempDir()
	c, err := newFileCache(filepath.Join(dir, "cache"), 1<<20, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("#!/bin/sh\n")
	d := digest.FromBytes(digest.SHA256, data)
	f := &fakeFetch{blobs: map[digest.Digest][]byte{d: data}}
	for _, exec := range []bool{false, true} {
		dst := filepath.Join(dir, fmt.Sprint("f", exec))
		if err := c.link(context.Background(), cacheKey{d, exec}, dst, f.fetch); err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(dst)
		want := os.FileMode(0o444)
		if exec {
			want = 0o555
		}
		if fi.Mode().Perm() != want {
			t.Errorf("exec=%v: mode %v, want %v", exec, fi.Mode().Perm(), want)
		}
	}
	if f.n.Load() != 2 {
		t.Errorf("%d downloads, want 2: plain and executable copies are separate entries", f.n.Load())
	}
	err = c.link(context.Background(), cacheKey{d: digest.FromBytes(digest.SHA256, []byte("absent"))}, filepath.Join(dir, "x"), f.fetch)
	if status.Code(err) != codes.NotFound {
		t.Errorf("missing blob: %v, want NotFound", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(c.dir, "tmp")); len(ents) != 0 {
		t.Errorf("temporary files left: %v", ents)
	}
}
