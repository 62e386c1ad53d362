package worker

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/kiln-build/kiln/cas/digest"
)

// newTestDirCache returns a directory cache in a temporary directory that
// removes discarded trees at once.
func newTestDirCache(t *testing.T, maxBytes int64, maxEntries int) *dirCache {
	t.Helper()
	c, err := newDirCache(filepath.Join(t.TempDir(), "dircache"), maxBytes, maxEntries, slog.New(slog.DiscardHandler), func(p string) {
		if err := removeTree(p); err != nil {
			t.Errorf("discard %s: %v", p, err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// build publishes an entry for d holding one file, pinned.
func build(t *testing.T, c *dirCache, d digest.Digest, bytes int64) *dirEntry {
	t.Helper()
	tmp, err := c.newBuild(d)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(tmp, "sub"), 0o755)
	os.WriteFile(filepath.Join(tmp, "sub", "file"), []byte(d.Hash()), 0o444)
	e, err := c.publish(d, tmp, bytes)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func TestDirCache(t *testing.T) {
	a := digest.FromBytes(digest.SHA256, []byte("directory a"))
	b := digest.FromBytes(digest.SHA256, []byte("directory b"))
	c3 := digest.FromBytes(digest.SHA256, []byte("directory c"))

	t.Run("WantedOnTheSecondUse", func(t *testing.T) {
		// Directories seen once stay out; a second use, or a cached one, is wanted.
		c := newTestDirCache(t, 100, 10)
		if c.wanted(a, 10) {
			t.Fatal("wanted on first sight")
		}
		if !c.wanted(a, 10) {
			t.Fatal("not wanted on second sight")
		}
		if c.wanted(b, 101) || c.wanted(b, 101) {
			t.Fatal("a directory larger than the cache is wanted")
		}
		c.release(build(t, c, a, 10))
		if !c.wanted(a, 10) {
			t.Fatal("a cached directory is not wanted")
		}
	})

	t.Run("PublishIsReadOnlyAndFound", func(t *testing.T) {
		// The entry's directories are read-only and a later acquire finds the same directory.
		c := newTestDirCache(t, 100, 10)
		e := build(t, c, a, 10)
		for _, p := range []string{e.path, filepath.Join(e.path, "sub")} {
			if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o555 {
				t.Errorf("%s: %v, %v; want mode 0555", p, fi.Mode(), err)
			}
		}
		c.release(e)
		again := c.acquire(a)
		if again == nil || again.path != e.path || c.builds.Load() != 1 || c.hits.Load() != 1 {
			t.Fatalf("acquire = %v; builds %d, hits %d", again, c.builds.Load(), c.hits.Load())
		}
		c.release(again)
		if c.acquire(b) != nil {
			t.Fatal("found a directory never published")
		}
	})

	t.Run("ConcurrentBuildsShareOneEntry", func(t *testing.T) {
		// Two actions built the same directory: the second gets the first's entry.
		c := newTestDirCache(t, 100, 10)
		tmp, _ := c.newBuild(a)
		first := build(t, c, a, 10)
		second, err := c.publish(a, tmp, 10)
		if err != nil || second != first || second.refs != 2 || exists(tmp) {
			t.Fatalf("publish = %v, %v (refs %d); tmp left: %v", second, err, second.refs, exists(tmp))
		}
	})

	t.Run("EvictionSparesEntriesInUse", func(t *testing.T) {
		// One entry fits; the pinned one stays, the unpinned newer one goes.
		c := newTestDirCache(t, 100, 1)
		ea := build(t, c, a, 10) // pinned by a running action
		eb := build(t, c, b, 10)
		if !exists(ea.path) || !exists(eb.path) {
			t.Fatal("an entry in use was evicted")
		}
		c.release(eb)
		if !exists(ea.path) || exists(eb.path) || c.acquire(b) != nil {
			t.Fatalf("after release: a %v, b %v; want b evicted, a kept", exists(ea.path), exists(eb.path))
		}
		c.release(ea)
		if !exists(ea.path) {
			t.Fatal("the only entry was evicted although it fits")
		}
		// Over the byte limit, least recently used first.
		c2 := newTestDirCache(t, 25, 10)
		for _, d := range []digest.Digest{a, b} {
			c2.release(build(t, c2, d, 10))
		}
		c2.release(c2.acquire(a)) // a is now more recent than b
		c2.release(build(t, c2, c3, 10))
		if c2.acquire(b) != nil || c2.acquire(a) == nil || c2.acquire(c3) == nil {
			t.Fatal("want b, the least recently used, evicted")
		}
	})

	t.Run("DamagedEntryIsBuiltAgain", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			damage func(p string)
		}{
			{"Removed", func(p string) { removeTree(p) }},
			{"MadeWritable", func(p string) { os.Chmod(p, 0o755) }},
			{"ReplacedByAFile", func(p string) { removeTree(p); os.WriteFile(p, nil, 0o555) }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c := newTestDirCache(t, 100, 10)
				e := build(t, c, a, 10)
				c.release(e)
				tc.damage(e.path)
				if got := c.acquire(a); got != nil {
					t.Fatalf("acquire returned the damaged entry %v", got)
				}
				if exists(e.path) {
					t.Fatal("the damaged entry is still in place")
				}
				if !c.wanted(a, 10) {
					t.Fatal("the damaged directory is no longer wanted")
				}
				again := build(t, c, a, 10)
				if again.path != e.path || !exists(filepath.Join(again.path, "sub", "file")) {
					t.Fatalf("rebuilt entry at %s", again.path)
				}
			})
		}
	})

	t.Run("StartsEmpty", func(t *testing.T) {
		// A leftover entry from an earlier run is not trusted.
		c := newTestDirCache(t, 100, 10)
		e := build(t, c, a, 10)
		c2, err := newDirCache(c.dir, 100, 10, c.log, c.discard)
		if err != nil {
			t.Fatal(err)
		}
		if exists(e.path) || c2.acquire(a) != nil {
			t.Fatal("an entry survived the restart")
		}
	})
}
