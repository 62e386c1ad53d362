package worker

import (
	"container/list"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/cas/digest"
)

// dirCache keeps input directories that many actions share, such as the
// compiler toolchain kiln cc sends with every compile, materialized once
// and read-only, so that a runner that mounts (runner.Mounter) shows an
// action such a directory with one read-only mount: no mkdir, symlink or
// hardlink per entry for each action, and nothing to remove after it.
// On this kind of VM creating or removing an inode costs 30-500 µs.
//
// Layout, under dir:
//
//	sha256-ab12…-1234/   a cached directory, named after its Directory
//	                     digest: directories 0555, files hardlinked from
//	                     the file cache, symlinks as in the tree
//	tmp/                 directories being built, and evicted or damaged
//	                     ones on their way out
//
// Which directories are cached is the caller's choice (see
// worker.mountCandidates); wanted makes sure that a directory is cached
// only the second time an action needs it, so that trees seen once never
// displace shared ones. An entry is published atomically: built under
// tmp/, its directories made read-only, then renamed into place.
//
// Entries that running actions use are pinned (acquire, release); the
// others are evicted least recently used first while the entries' file
// bytes exceed maxBytes or their number maxEntries. Evicting renames the
// entry into tmp/ and has discard remove it later, off the action's path.
// Files shared with the file cache count in both caches' sizes; an entry
// keeps its files' inodes alive after the file cache drops their names.
//
// An entry whose directory is missing or is no longer a read-only
// directory when acquired (someone removed or changed it) is dropped and
// built again. Damage below its top directory is not noticed: reading
// every entry per action would cost what the cache saves. The cache does
// not survive a restart: a leftover entry cannot be trusted without
// reading all of it, so the worker empties dir when it starts.
type dirCache struct {
	dir        string
	maxBytes   int64
	maxEntries int
	log        *slog.Logger
	// discard removes the tree at path, which nothing uses any more, at
	// some later time (the worker's janitor).
	discard func(path string)
	seq     atomic.Uint64 // names directories under tmp/

	// builds and hits count entries published and entries found, for logs
	// and tests.
	builds, hits atomic.Int64

	mu      sync.Mutex
	entries map[digest.Digest]*list.Element // values are *dirEntry; guarded by mu
	lru     *list.List                      // front is most recently used; guarded by mu
	bytes   int64                           // total file bytes of entries; guarded by mu
	// seen holds directories that were wanted once and are not cached;
	// guarded by mu. It is cleared when it reaches maxSeenDirs, which at
	// worst delays caching a directory by one more use.
	seen map[digest.Digest]bool
}

// maxSeenDirs bounds dirCache.seen.
const maxSeenDirs = 4096

// dirEntry is one cached directory.
type dirEntry struct {
	d     digest.Digest
	path  string
	bytes int64
	refs  int // actions using the entry; guarded by dirCache.mu
}

// newDirCache empties dir (creating it if needed) and returns a cache
// there for up to maxBytes of files in up to maxEntries directories.
func newDirCache(dir string, maxBytes int64, maxEntries int, log *slog.Logger, discard func(string)) (*dirCache, error) {
	if err := removeTree(dir); err != nil {
		return nil, fmt.Errorf("remove the old directory cache: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return nil, err
	}
	return &dirCache{
		dir: dir, maxBytes: maxBytes, maxEntries: maxEntries, log: log, discard: discard,
		entries: map[digest.Digest]*list.Element{}, lru: list.New(), seen: map[digest.Digest]bool{},
	}, nil
}

// path is where d's entry lives: "{function}-{hash}-{size}".
func (c *dirCache) path(d digest.Digest) string {
	return filepath.Join(c.dir, d.Function().Name()+"-"+d.Hash()+"-"+strconv.FormatInt(d.Size(), 10))
}

// tmpPath returns a fresh name under tmp/.
func (c *dirCache) tmpPath(what string) string {
	return filepath.Join(c.dir, "tmp", fmt.Sprintf("%s-%d", what, c.seq.Add(1)))
}

// wanted reports whether the directory d, whose files hold bytes, should
// be served from the cache: it is cached already, or an earlier call
// wanted it. The first call for a directory records it and returns
// false. A directory larger than the whole cache is never wanted.
func (c *dirCache) wanted(d digest.Digest, bytes int64) bool {
	if bytes > c.maxBytes {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[d]; ok || c.seen[d] {
		return true
	}
	if len(c.seen) >= maxSeenDirs {
		clear(c.seen)
	}
	c.seen[d] = true
	return false
}

// acquire pins d's entry and marks it used; nil if d is not cached, or if
// its entry was damaged (then it is dropped, to be built again).
func (c *dirCache) acquire(d digest.Digest) *dirEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[d]
	if !ok {
		return nil
	}
	e := el.Value.(*dirEntry)
	if fi, err := os.Lstat(e.path); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o555 {
		c.log.Warn("directory cache: entry damaged; building it again", "dir", e.path, "err", err)
		c.removeLocked(el)
		return nil
	}
	c.lru.MoveToFront(el)
	e.refs++
	c.hits.Add(1)
	return e
}

// release unpins an entry that acquire or publish returned.
func (c *dirCache) release(e *dirEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.refs--
	c.evictLocked()
}

// newBuild creates an empty directory under tmp/ to build d's entry in,
// for publish or abandon.
func (c *dirCache) newBuild(d digest.Digest) (string, error) {
	p := c.tmpPath(d.Hash())
	if err := os.Mkdir(p, 0o755); err != nil {
		return "", status.Errorf(codes.Internal, "directory cache: %v", err)
	}
	return p, nil
}

// abandon discards a build that failed.
func (c *dirCache) abandon(tmp string) { c.discard(tmp) }

// publish makes tmp, a complete copy of the directory d whose files hold
// bytes, d's entry, and returns the entry pinned. If another action
// published d meanwhile, tmp is discarded and that entry returned.
func (c *dirCache) publish(d digest.Digest, tmp string, bytes int64) (*dirEntry, error) {
	err := filepath.WalkDir(tmp, func(p string, de fs.DirEntry, err error) error {
		if err == nil && de.IsDir() {
			err = os.Chmod(p, 0o555)
		}
		return err
	})
	if err != nil {
		c.discard(tmp)
		return nil, status.Errorf(codes.Internal, "directory cache: make %s read-only: %v", d, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[d]; ok {
		c.discard(tmp)
		e := el.Value.(*dirEntry)
		c.lru.MoveToFront(el)
		e.refs++
		return e, nil
	}
	final := c.path(d)
	err = os.Rename(tmp, final)
	if errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.ENOTEMPTY) {
		// Left by an entry dropped while its directory could not be
		// moved away: not indexed, so nothing uses it.
		if err = c.moveAwayLocked(final); err == nil {
			err = os.Rename(tmp, final)
		}
	}
	if err != nil {
		c.discard(tmp)
		return nil, status.Errorf(codes.Internal, "directory cache: store %s: %v", d, err)
	}
	e := &dirEntry{d: d, path: final, bytes: bytes, refs: 1}
	c.entries[d] = c.lru.PushFront(e)
	c.bytes += bytes
	delete(c.seen, d)
	c.builds.Add(1)
	c.evictLocked()
	return e, nil
}

// evictLocked removes unpinned entries, least recently used first, until
// the cache fits. c.mu must be held.
func (c *dirCache) evictLocked() {
	for el := c.lru.Back(); el != nil && (c.bytes > c.maxBytes || c.lru.Len() > c.maxEntries); {
		prev := el.Prev()
		if el.Value.(*dirEntry).refs == 0 {
			c.removeLocked(el)
		}
		el = prev
	}
}

// removeLocked drops an entry from the index and moves its directory
// away, so that the name is free for a new build at once and the slow
// removal happens later. The directory stays wanted: it was used twice.
// c.mu must be held.
func (c *dirCache) removeLocked(el *list.Element) {
	e := el.Value.(*dirEntry)
	c.lru.Remove(el)
	delete(c.entries, e.d)
	c.bytes -= e.bytes
	if len(c.seen) < maxSeenDirs {
		c.seen[e.d] = true
	}
	if err := c.moveAwayLocked(e.path); err != nil {
		c.log.Warn("directory cache: remove an entry", "dir", e.path, "err", err)
	}
}

// moveAwayLocked renames p into tmp/ and has it discarded; a missing p is
// fine. c.mu must be held, so that no publish renames a new entry to p
// meanwhile.
func (c *dirCache) moveAwayLocked(p string) error {
	old := c.tmpPath("old")
	err := os.Rename(p, old)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	}
	c.discard(old)
	return nil
}
