package worker

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/internal/rpcstatus"
)

// fileCache is the worker's local, size-bounded cache of CAS files, from
// which build directories are populated with hardlinks: a file that is
// already cached is never downloaded again, and linking it costs one
// syscall whatever its size.
//
// Layout, under dir:
//
//	ab/sha256-ab12…-1234      a cached file, read-only (0444)
//	ab/sha256-ab12…-1234-x    the same content, executable (0555)
//	tmp/                      downloads in progress, and spare empty files
//	                          to write blobs into (emptied at start)
//
// Hardlinks share their inode's mode, so the executable and plain copies of
// one digest are separate entries. Entries are evicted least recently used
// first once their total size exceeds maxBytes; an entry being linked is
// pinned and never evicted under the link. Evicting an entry only removes
// the cache's name: build directories that link it keep their copy.
//
// The cache survives restarts: the index is rebuilt from the directory,
// ordered by each file's ctime, which every link(2) updates, so the order
// of last use is kept without writing anything on a hit. Files whose size
// or mode does not match their name are removed then.
//
// Known limit: in host mode the action runs as the worker's user and could
// chmod and then modify an input file, which would change the cached copy
// for later actions too. The restart check catches changed modes; the
// hermetic runner is meant to mount the input root read-only.
type fileCache struct {
	dir      string
	maxBytes int64
	log      *slog.Logger
	flights  singleflight.Group // downloads in progress, by entry name
	tmpSeq   atomic.Uint64      // names temporary files

	mu      sync.Mutex
	entries map[cacheKey]*list.Element     // values are *cacheEntry; guarded by mu
	lru     *list.List                     // front is most recently used; guarded by mu
	size    int64                          // total bytes of entries; guarded by mu
	reads   map[digest.Digest]*batchFlight // batch reads in progress (see fill); guarded by mu

	// spares are empty files under tmp/ for store to fill: creating the
	// file is the slow part of storing a small blob. The cache's owner
	// calls spares.fill.
	spares *spares
}

// batchFlight is the read of one digest by a fill call. Other fill calls
// that need the digest wait for it rather than read it again.
type batchFlight struct {
	done chan struct{} // closed once data and err are set
	data []byte        // the verified content when err is nil
	err  error         // NotFound when the CAS lacks the blob
}

// cacheKey names one cache entry.
type cacheKey struct {
	d    digest.Digest
	exec bool
}

type cacheEntry struct {
	key  cacheKey
	pins int // links in progress; guarded by fileCache.mu
}

// name is the entry's file name: "{function}-{hash}-{size}" plus "-x" for
// executables.
func (k cacheKey) name() string {
	s := k.d.Function().Name() + "-" + k.d.Hash() + "-" + strconv.FormatInt(k.d.Size(), 10)
	if k.exec {
		s += "-x"
	}
	return s
}

func (k cacheKey) mode() os.FileMode {
	if k.exec {
		return 0o555
	}
	return 0o444
}

// parseCacheName is the inverse of cacheKey.name.
func parseCacheName(name string) (cacheKey, bool) {
	var k cacheKey
	name, k.exec = strings.CutSuffix(name, "-x")
	parts := strings.Split(name, "-")
	if len(parts) != 3 {
		return k, false
	}
	size, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return k, false
	}
	for _, v := range digest.SupportedFunctions() {
		fn, _ := digest.FunctionFromEnum(v)
		if fn.Name() == parts[0] {
			d, err := digest.New(fn, parts[1], size)
			if err != nil {
				return k, false
			}
			k.d = d
			return k, true
		}
	}
	return k, false
}

func (c *fileCache) path(k cacheKey) string {
	return filepath.Join(c.dir, k.d.Hash()[:2], k.name())
}

// newFileCache opens the cache in dir, creating it if needed, and rebuilds
// its index from the files there. It keeps up to spareFiles spare files
// once its spares run.
func newFileCache(dir string, maxBytes int64, spareFiles int, log *slog.Logger) (*fileCache, error) {
	c := &fileCache{
		dir: dir, maxBytes: maxBytes, log: log,
		entries: map[cacheKey]*list.Element{}, lru: list.New(), reads: map[digest.Digest]*batchFlight{},
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	tmp := filepath.Join(dir, "tmp")
	if err := removeTree(tmp); err != nil {
		return nil, err
	}
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return nil, err
	}
	c.spares = newSpares(tmp, spareFiles, func(p string) error { return createEmpty(p, 0o600) }, "cache file", log)
	type found struct {
		key   cacheKey
		ctime time.Time
	}
	var all []found
	shards, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	removed := 0
	for _, sh := range shards {
		if !sh.IsDir() || len(sh.Name()) != 2 {
			continue
		}
		ents, err := os.ReadDir(filepath.Join(dir, sh.Name()))
		if err != nil {
			return nil, err
		}
		for _, ent := range ents {
			p := filepath.Join(dir, sh.Name(), ent.Name())
			k, ok := parseCacheName(ent.Name())
			var fi os.FileInfo
			if ok {
				fi, err = os.Lstat(p)
				ok = err == nil && fi.Mode().IsRegular() && fi.Size() == k.d.Size() &&
					fi.Mode().Perm() == k.mode() && k.d.Hash()[:2] == sh.Name()
			}
			if !ok {
				os.RemoveAll(p)
				removed++
				continue
			}
			ctime := fi.ModTime()
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				ctime = time.Unix(st.Ctim.Unix())
			}
			all = append(all, found{k, ctime})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].ctime.Before(all[j].ctime) })
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range all {
		c.entries[f.key] = c.lru.PushFront(&cacheEntry{key: f.key})
		c.size += f.key.d.Size()
	}
	c.evictLocked()
	log.Info("file cache ready", "dir", dir, "files", len(c.entries), "bytes", c.size, "max_bytes", maxBytes, "removed_bad_files", removed)
	return c, nil
}

// has reports whether k is cached, without touching its recency.
func (c *fileCache) has(k cacheKey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.entries[k]
	return ok
}

// acquire pins k's entry and marks it used; nil if k is not cached.
func (c *fileCache) acquire(k cacheKey) *cacheEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[k]
	if !ok {
		return nil
	}
	c.lru.MoveToFront(el)
	e := el.Value.(*cacheEntry)
	e.pins++
	return e
}

func (c *fileCache) release(e *cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.pins--
	c.evictLocked()
}

// drop forgets k, whose file has vanished from under the cache.
func (c *fileCache) drop(k cacheKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[k]; ok {
		c.lru.Remove(el)
		delete(c.entries, k)
		c.size -= k.d.Size()
	}
}

// evictLocked removes unpinned entries, least recently used first, until
// the cache fits. Files are removed under c.mu so that a new download of
// the same entry cannot be renamed into place between the index update
// and the removal. c.mu must be held.
func (c *fileCache) evictLocked() {
	for el := c.lru.Back(); el != nil && c.size > c.maxBytes; {
		prev := el.Prev()
		e := el.Value.(*cacheEntry)
		if e.pins == 0 {
			if err := os.Remove(c.path(e.key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				c.log.Warn("file cache: evict", "file", c.path(e.key), "err", err)
			}
			c.lru.Remove(el)
			delete(c.entries, e.key)
			c.size -= e.key.d.Size()
		}
		el = prev
	}
}

// fetchFunc downloads a blob to path, verified, creating the file.
type fetchFunc func(ctx context.Context, d digest.Digest, path string) error

// link makes dst a hardlink to the cached file of k, downloading it with
// fetch first if it is not cached. Concurrent calls for one entry share
// one download. If the file has too many links already (EMLINK), dst gets
// a copy instead. A file that cannot stay in the cache (larger than the
// whole cache, or evicted again before it could be linked because the
// cache is too small for the files in use) is downloaded straight to dst.
// dst must not exist.
func (c *fileCache) link(ctx context.Context, k cacheKey, dst string, fetch fetchFunc) error {
	if k.d.Size() <= c.maxBytes {
		for attempt := 0; attempt < 3; attempt++ {
			if e := c.acquire(k); e != nil {
				err := c.linkPinned(k, dst)
				c.release(e)
				if err == nil {
					return nil
				}
				if _, serr := os.Lstat(c.path(k)); !errors.Is(serr, fs.ErrNotExist) {
					return status.Errorf(codes.Internal, "link input %s: %v", k.d, err)
				}
				// Someone removed the cached file: forget it and fetch again.
				c.log.Warn("file cache: cached file vanished", "file", c.path(k))
				c.drop(k)
				continue
			}
			if err := c.fetch(ctx, k, fetch); err != nil {
				return err
			}
		}
	}
	if err := fetch(ctx, k.d, dst); err != nil {
		return err
	}
	if err := os.Chmod(dst, k.mode()); err != nil {
		return status.Errorf(codes.Internal, "input %s: %v", k.d, err)
	}
	return nil
}

// linkPinned links (or on EMLINK copies) k's file to dst; k must be pinned.
func (c *fileCache) linkPinned(k cacheKey, dst string) error {
	src := c.path(k)
	err := os.Link(src, dst)
	if err == nil || !errors.Is(err, syscall.EMLINK) {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Chmod(k.mode()); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// fetch downloads k into the cache, sharing the download with concurrent
// callers. The download runs with the context of the caller that started
// it; if that caller goes away and its download fails with its context
// error, callers whose own context is still live start a new download
// instead of inheriting the failure.
func (c *fileCache) fetch(ctx context.Context, k cacheKey, fetch fetchFunc) error {
	for {
		ch := c.flights.DoChan(k.name(), func() (any, error) {
			return nil, c.download(ctx, k, fetch)
		})
		select {
		case <-ctx.Done():
			return rpcstatus.FromContext(ctx)
		case r := <-ch:
			code := rpcstatus.Code(r.Err)
			if r.Err != nil && ctx.Err() == nil && (code == codes.Canceled || code == codes.DeadlineExceeded) {
				continue
			}
			return r.Err
		}
	}
}

// download fetches k into a temporary file, makes it read-only and renames
// it into place, then indexes it.
func (c *fileCache) download(ctx context.Context, k cacheKey, fetch fetchFunc) error {
	if c.has(k) { // a flight that ended just before ours fetched it
		return nil
	}
	tmp := filepath.Join(c.dir, "tmp", fmt.Sprintf("%s.%d", k.name(), c.tmpSeq.Add(1)))
	if err := fetch(ctx, k.d, tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Chmod(tmp, k.mode()); err != nil {
		os.Remove(tmp)
		return status.Errorf(codes.Internal, "file cache: store %s: %v", k.d, err)
	}
	return c.publish(k, tmp)
}

// publish renames tmp, a complete and verified file with k's mode, into
// place as k's entry and indexes it. A file already there is replaced:
// it has the same content.
func (c *fileCache) publish(k cacheKey, tmp string) error {
	final := c.path(k)
	err := os.MkdirAll(filepath.Dir(final), 0o755)
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		os.Remove(tmp)
		return status.Errorf(codes.Internal, "file cache: store %s: %v", k.d, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[k]; ok {
		c.lru.MoveToFront(el)
		return nil
	}
	c.entries[k] = c.lru.PushFront(&cacheEntry{key: k})
	c.size += k.d.Size()
	c.evictLocked()
	return nil
}

// store writes data, verified content of k's digest, into the cache as k's
// entry: into a temporary file (a spare one when one is ready), published
// with a rename, so that the entry never holds partial data.
func (c *fileCache) store(k cacheKey, data []byte) error {
	tmp, spare := c.spares.take()
	flags := os.O_WRONLY | os.O_TRUNC // the spare is empty; truncating an empty file is cheap
	if !spare {
		tmp = filepath.Join(c.dir, "tmp", fmt.Sprintf("%s.%d", k.name(), c.tmpSeq.Add(1)))
		flags = os.O_WRONLY | os.O_CREATE | os.O_EXCL
	}
	f, err := os.OpenFile(tmp, flags, k.mode())
	if err != nil {
		if spare {
			os.Remove(tmp)
		}
		return status.Errorf(codes.Internal, "file cache: store %s: %v", k.d, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(k.mode()) // the mode given to open is subject to the umask
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return status.Errorf(codes.Internal, "file cache: store %s: %v", k.d, err)
	}
	return c.publish(k, tmp)
}

// batchReadFunc reads blobs into memory and verifies them, like
// casclient.Client.BatchRead: the map holds every blob found, and missing
// ones make the error NotFound.
type batchReadFunc func(ctx context.Context, ds []digest.Digest) (map[digest.Digest][]byte, error)

// fillConcurrency bounds the batch reads of one fill call in flight.
const fillConcurrency = 4

// fill makes sure that the entries of keys are cached: it reads the
// digests that are not, with read, in requests of at most chunkBytes of
// content each (fillConcurrency at a time, so that what a fill holds in
// memory is bounded), and writes each blob straight into the cache. A
// digest that another fill call is reading is waited for, not read again.
// Every key must fit the cache (size at most maxBytes) and not be empty.
//
// It returns the digests the CAS lacks, each once, in the order of keys;
// the other entries are then cached, although a small cache may already
// have evicted some again (link fetches those on its own). Other failures
// are the error.
func (c *fileCache) fill(ctx context.Context, keys []cacheKey, chunkBytes int64, read batchReadFunc) ([]digest.Digest, error) {
	absent := map[digest.Digest]bool{}
	for {
		retry, err := c.fillOnce(ctx, keys, chunkBytes, read, absent)
		if err != nil {
			return nil, err
		}
		if !retry {
			break
		}
	}
	var missing []digest.Digest
	for _, k := range keys {
		if absent[k.d] {
			missing = append(missing, k.d)
			delete(absent, k.d)
		}
	}
	return missing, nil
}

// fillOnce is one round of fill. Digests found missing are added to
// absent and not asked for again. retry reports that a read this call
// waited for failed because its owner's context ended while ours is live:
// another round reads what is still needed.
func (c *fileCache) fillOnce(ctx context.Context, keys []cacheKey, chunkBytes int64, read batchReadFunc, absent map[digest.Digest]bool) (retry bool, err error) {
	need := map[digest.Digest][]cacheKey{} // keys not cached, by digest
	var own []digest.Digest                // digests this call reads
	mine := map[digest.Digest]*batchFlight{}
	others := map[digest.Digest]*batchFlight{}
	c.mu.Lock()
	for _, k := range keys {
		if _, ok := c.entries[k]; ok || absent[k.d] {
			continue
		}
		if _, ok := need[k.d]; !ok {
			if f, ok := c.reads[k.d]; ok {
				others[k.d] = f
			} else {
				f := &batchFlight{done: make(chan struct{})}
				c.reads[k.d] = f
				mine[k.d] = f
				own = append(own, k.d)
			}
		}
		need[k.d] = append(need[k.d], k)
	}
	c.mu.Unlock()

	// finish ends the flight of d: waiters see data or err.
	finish := func(d digest.Digest, data []byte, err error) {
		f := mine[d]
		f.data, f.err = data, err
		c.mu.Lock()
		delete(c.reads, d)
		c.mu.Unlock()
		close(f.done)
	}
	var mu sync.Mutex // guards finished and absent while the reads run
	finished := map[digest.Digest]bool{}
	defer func() {
		// Whatever was not read (an error stopped us) fails for the
		// waiters too, with our error, or our context's.
		ferr := err
		if ferr == nil {
			ferr = status.Error(codes.Internal, "file cache: read abandoned")
		}
		for d := range mine {
			if !finished[d] {
				finish(d, nil, ferr)
			}
		}
	}()

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(fillConcurrency)
	for start := 0; start < len(own); {
		end, total := start, int64(0)
		for end < len(own) && (end == start || total+own[end].Size() <= chunkBytes) {
			total += own[end].Size()
			end++
		}
		chunk := own[start:end]
		start = end
		g.Go(func() error {
			blobs, err := read(gctx, chunk)
			if err != nil && !rpcstatus.IsNotFound(err) {
				return err
			}
			for _, d := range chunk {
				data, ok := blobs[d]
				if !ok {
					mu.Lock()
					absent[d] = true
					finished[d] = true
					mu.Unlock()
					finish(d, nil, status.Errorf(codes.NotFound, "read blob %s: not found", d))
					continue
				}
				for _, k := range need[d] {
					if err := c.store(k, data); err != nil {
						return err
					}
				}
				mu.Lock()
				finished[d] = true
				mu.Unlock()
				finish(d, data, nil)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return false, err
	}

	for d, f := range others {
		select {
		case <-f.done:
		case <-ctx.Done():
			return false, rpcstatus.FromContext(ctx)
		}
		code := rpcstatus.Code(f.err)
		switch {
		case f.err == nil:
			// The reader stored the keys it needed; ours may differ
			// (the executable entry and the plain one).
			for _, k := range need[d] {
				if !c.has(k) {
					if err := c.store(k, f.data); err != nil {
						return false, err
					}
				}
			}
		case code == codes.NotFound:
			absent[d] = true
		case code == codes.Canceled || code == codes.DeadlineExceeded:
			if ctx.Err() != nil {
				return false, rpcstatus.FromContext(ctx)
			}
			retry = true // the reader went away: read it ourselves
		default:
			return false, f.err
		}
	}
	return retry, nil
}
