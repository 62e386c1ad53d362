package worker

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
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
	c, err := newFileCache(filepath.Join(dir, "cache"), 250, 0, slog.New(slog.DiscardHandler))
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
		c2, err := newFileCache(c.dir, 250, 0, slog.New(slog.DiscardHandler))
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
	c, err := newFileCache(filepath.Join(dir, "cache"), 1<<20, 0, slog.New(slog.DiscardHandler))
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

// fakeBatchRead serves BatchRead from memory. Each call may be held until
// release is closed; it counts the reads of each digest.
type fakeBatchRead struct {
	blobs   map[digest.Digest][]byte
	started chan []digest.Digest // receives each call's digests, if not nil
	release chan struct{}        // a call waits for it, if not nil
	mu      sync.Mutex
	reads   map[digest.Digest]int
}

func (f *fakeBatchRead) read(ctx context.Context, ds []digest.Digest) (map[digest.Digest][]byte, error) {
	f.mu.Lock()
	for _, d := range ds {
		f.reads[d]++
	}
	f.mu.Unlock()
	if f.started != nil {
		f.started <- ds
	}
	if f.release != nil {
		select {
		case <-f.release:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	out := map[digest.Digest][]byte{}
	var err error
	for _, d := range ds {
		if data, ok := f.blobs[d]; ok {
			out[d] = data
		} else {
			err = status.Errorf(codes.NotFound, "blob %s", d)
		}
	}
	return out, err
}

func (f *fakeBatchRead) readsOf(d digest.Digest) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads[d]
}

func TestFileCacheFill(t *testing.T) {
	newCache := func(t *testing.T) *fileCache {
		c, err := newFileCache(filepath.Join(t.TempDir(), "cache"), 1<<20, 0, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	blobs := map[digest.Digest][]byte{}
	var keys []cacheKey
	for i := range 5 {
		data := blobOf(100+i, fmt.Sprint("fill", i))
		d := digest.FromBytes(digest.SHA256, data)
		blobs[d] = data
		keys = append(keys, cacheKey{d: d})
	}
	absent := cacheKey{d: digest.FromBytes(digest.SHA256, []byte("absent"))}

	t.Run("StoresEachKeyFromOneRead", func(t *testing.T) {
		// The plain and executable entries of one digest come from one
		// read, in requests of at most chunkBytes (two blobs here).
		c := newCache(t)
		f := &fakeBatchRead{blobs: blobs, reads: map[digest.Digest]int{}, started: make(chan []digest.Digest, 10)}
		want := append(append([]cacheKey{}, keys...), cacheKey{keys[0].d, true})
		missing, err := c.fill(context.Background(), want, 210, f.read)
		if err != nil || len(missing) != 0 {
			t.Fatalf("fill: missing %v, err %v", missing, err)
		}
		close(f.started)
		calls := 0
		for ds := range f.started {
			calls++
			if len(ds) > 2 {
				t.Errorf("a request for %d blobs, want at most 2", len(ds))
			}
		}
		if calls != 3 {
			t.Errorf("%d requests, want 3", calls)
		}
		for _, k := range want {
			if n := f.readsOf(k.d); n != 1 {
				t.Errorf("%s read %d times, want 1", k.d, n)
			}
			got, err := os.ReadFile(c.path(k))
			fi, _ := os.Stat(c.path(k))
			if err != nil || !bytes.Equal(got, blobs[k.d]) || fi.Mode().Perm() != k.mode() {
				t.Errorf("entry %s: err %v, mode %v, content ok %v", k.name(), err, fi.Mode().Perm(), bytes.Equal(got, blobs[k.d]))
			}
			if !c.has(k) {
				t.Errorf("entry %s not indexed", k.name())
			}
		}
		if ents, _ := os.ReadDir(filepath.Join(c.dir, "tmp")); len(ents) != 0 {
			t.Errorf("temporary files left: %v", ents)
		}
	})

	t.Run("ReportsMissingInOrder", func(t *testing.T) {
		c := newCache(t)
		f := &fakeBatchRead{blobs: blobs, reads: map[digest.Digest]int{}}
		other := cacheKey{d: digest.FromBytes(digest.SHA256, []byte("also absent"))}
		missing, err := c.fill(context.Background(), []cacheKey{other, keys[1], absent, {other.d, true}}, 1<<20, f.read)
		if err != nil {
			t.Fatal(err)
		}
		if len(missing) != 2 || missing[0] != other.d || missing[1] != absent.d {
			t.Errorf("missing %v, want %s then %s", missing, other.d, absent.d)
		}
		if !c.has(keys[1]) {
			t.Errorf("the blob that was there is not cached")
		}
	})

	t.Run("ConcurrentFillsShareReads", func(t *testing.T) {
		// The second fill needs a blob the first is reading: it waits for
		// that read, and stores the executable entry the first did not.
		c := newCache(t)
		f := &fakeBatchRead{blobs: blobs, reads: map[digest.Digest]int{}, started: make(chan []digest.Digest, 10), release: make(chan struct{})}
		first := make(chan error, 1)
		go func() {
			_, err := c.fill(context.Background(), keys[:2], 1<<20, f.read)
			first <- err
		}()
		<-f.started
		second := make(chan error, 1)
		go func() {
			_, err := c.fill(context.Background(), []cacheKey{{keys[1].d, true}, keys[2]}, 1<<20, f.read)
			second <- err
		}()
		if ds := <-f.started; len(ds) != 1 || ds[0] != keys[2].d {
			t.Errorf("the second fill read %v, want only %s", ds, keys[2].d)
		}
		close(f.release)
		if err := <-first; err != nil {
			t.Fatal(err)
		}
		if err := <-second; err != nil {
			t.Fatal(err)
		}
		for _, k := range []cacheKey{keys[0], keys[1], {keys[1].d, true}, keys[2]} {
			if !c.has(k) || f.readsOf(k.d) != 1 {
				t.Errorf("%s: cached %v, read %d times; want cached, read once", k.name(), c.has(k), f.readsOf(k.d))
			}
		}
	})

	t.Run("WaiterReadsWhenTheReaderGivesUp", func(t *testing.T) {
		// The first fill's context ends while it reads; the second,
		// which waited for that read, reads the blob itself.
		c := newCache(t)
		f := &fakeBatchRead{blobs: blobs, reads: map[digest.Digest]int{}, started: make(chan []digest.Digest, 10), release: make(chan struct{})}
		ctx, cancel := context.WithCancel(context.Background())
		first := make(chan error, 1)
		go func() {
			_, err := c.fill(ctx, keys[3:4], 1<<20, f.read)
			first <- err
		}()
		<-f.started
		second := make(chan error, 1)
		go func() {
			_, err := c.fill(context.Background(), keys[3:4], 1<<20, f.read)
			second <- err
		}()
		time.Sleep(20 * time.Millisecond) // let the second fill find the read in progress
		cancel()
		if err := <-first; status.Code(err) != codes.Canceled {
			t.Errorf("first fill: %v, want Canceled", err)
		}
		<-f.started // the second fill's own read
		close(f.release)
		if err := <-second; err != nil || !c.has(keys[3]) {
			t.Errorf("second fill: %v, cached %v", err, c.has(keys[3]))
		}
	})
}

func TestFileCacheStore(t *testing.T) {
	// A stale file under the entry's name (not in the index) is replaced,
	// never trusted.
	data := []byte("stored content")
	k := cacheKey{d: digest.FromBytes(digest.SHA256, data), exec: true}
	c, err := newFileCache(filepath.Join(t.TempDir(), "cache"), 1<<20, 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Dir(c.path(k)), 0o755)
	if err := os.WriteFile(c.path(k), []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.store(k, data); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(c.path(k))
	fi, _ := os.Stat(c.path(k))
	if err != nil || !bytes.Equal(got, data) || fi.Mode().Perm() != 0o555 || !c.has(k) {
		t.Errorf("entry: %q, err %v, mode %v, indexed %v; want the content, 0555, indexed", got, err, fi.Mode().Perm(), c.has(k))
	}
	if ents, _ := os.ReadDir(filepath.Join(c.dir, "tmp")); len(ents) != 0 {
		t.Errorf("temporary files left: %v", ents)
	}
}

func TestFileCacheStoreUsesSpares(t *testing.T) {
	// store fills a spare file made ahead of time, and creates one only
	// when none is ready.
	c, err := newFileCache(filepath.Join(t.TempDir(), "cache"), 1<<20, 1, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	c.spares.fill(context.Background())
	if len(c.spares.ready) != 1 {
		t.Fatalf("%d spare files, want 1", len(c.spares.ready))
	}
	spare := <-c.spares.ready
	c.spares.ready <- spare
	for i, data := range [][]byte{[]byte("into the spare"), []byte("into a new file")} {
		k := cacheKey{d: digest.FromBytes(digest.SHA256, data)}
		if err := c.store(k, data); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(c.path(k))
		fi, _ := os.Stat(c.path(k))
		if err != nil || !bytes.Equal(got, data) || fi.Mode().Perm() != 0o444 || !c.has(k) {
			t.Errorf("entry %d: %q, err %v, mode %v, indexed %v", i, got, err, fi.Mode().Perm(), c.has(k))
		}
		if _, err := os.Stat(spare); i == 0 && !os.IsNotExist(err) {
			t.Errorf("the spare is still there: %v", err)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(c.dir, "tmp")); len(ents) != 0 {
		t.Errorf("files left in tmp: %v (no fill since)", ents)
	}
}
