package disk

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/cas/lru"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// record is a blob found at startup: its digest and content length.
type record struct {
	d digest.Digest
	n int64
}

// New opens (creating if needed) the store in dir, holding at most maxBytes
// of files (each counted rounded up to 4 KiB). It locks dir against other
// processes (FailedPrecondition if another one holds it), removes temporary
// files left by a crash, and rebuilds the index from the directory listings
// alone: names carry sizes, so no file is opened or stat'ed. Shards are
// listed in parallel. If Close left a snapshot of the recency order, New
// restores that order (blobs missing from it count as least recently used)
// and deletes it; without one, the initial order is arbitrary. If the files
// exceed maxBytes (the limit was lowered), the excess is evicted.
//
// New logs one line at Info level with the number of blobs and the time
// taken.
func New(ctx context.Context, dir string, maxBytes int64, opts ...Option) (*Store, error) {
	start := time.Now()
	s := newStore(dir, opts)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fsError(err, "disk store")
	}
	if err := s.lock(); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			syscall.Close(s.lockFD)
		}
	}()

	// The snapshot is read while the shards are listed.
	var snapshot []record
	snapshotRead := make(chan struct{})
	go func() {
		defer close(snapshotRead)
		snapshot = s.readSnapshot()
	}()
	shards, err := s.scan(ctx)
	<-snapshotRead
	if err != nil {
		return nil, err
	}
	if snapshot != nil {
		// Each shard becomes the blobs missing from the snapshot, and the
		// snapshot keeps only the blobs found on disk.
		snapshot, err = s.reconcile(ctx, shards, snapshot)
		if err != nil {
			return nil, err
		}
	}

	// Insert oldest first: blobs unknown to the snapshot, then the
	// snapshot's order. This is one map insertion per blob; at a million
	// blobs the cost of New is mostly this loop and the listing. Two files
	// for one key (see removeDuplicate) are resolved by reconcile or, without
	// a snapshot, by insertAtStartup.
	total := len(snapshot)
	for _, recs := range shards {
		total += len(recs)
	}
	s.index = lru.New[digest.Digest, int64](maxBytes, total)
	for i, recs := range shards {
		for _, r := range recs {
			s.insertAtStartup(r)
		}
		shards[i] = nil // let the GC have it
	}
	for _, r := range snapshot {
		s.insertAtStartup(r)
	}
	snapshot = nil
	for _, v := range s.index.Trim() {
		if err := unlink(s.path(v.Key, v.Value)); err != nil && !errors.Is(err, syscall.ENOENT) {
			s.log.Error("disk store: cannot remove blob over the size limit", "err", err)
		}
	}
	s.log.Info("disk store opened", "dir", dir, "blobs", s.index.Len(), "bytes", s.index.Used(), "max_bytes", maxBytes, "took", time.Since(start).Round(time.Millisecond))
	ok = true
	return s, nil
}

// insertAtStartup adds r to the index as the most recently used blob.
func (s *Store) insertAtStartup(r record) {
	if old, replaced := s.index.Insert(r.d, r.n, diskUsage(r.n)); replaced && old != r.n {
		s.removeDuplicate(r.d, old)
	}
}

// removeDuplicate removes the file of action-cache key d with content
// length n, when another file for d was kept. Two files for one key are left
// by a crash between the rename of a new entry and the unlink of the old.
func (s *Store) removeDuplicate(d digest.Digest, n int64) {
	if err := unlink(s.path(d, n)); err != nil && !errors.Is(err, syscall.ENOENT) {
		s.log.Error("disk store: cannot remove duplicate entry", "err", err)
	}
}

// lock takes an exclusive flock on DIR/LOCK, held until Close.
func (s *Store) lock() error {
	path := filepath.Join(s.dir, lockName)
	fd, err := syscall.Open(path, syscall.O_RDWR|syscall.O_CREAT|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return fsError(&os.PathError{Op: "open", Path: path, Err: err}, "disk store")
	}
	if err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		syscall.Close(fd)
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return status.Errorf(codes.FailedPrecondition, "disk store %s is in use by another process", s.dir)
		}
		return fsError(&os.PathError{Op: "flock", Path: path, Err: err}, "disk store")
	}
	s.lockFD = fd
	return nil
}

// shardJob is one shard directory: DIR/{fn}/{hex}.
type shardJob struct {
	fn  digest.Function
	dir string
	hex string
}

// shardJobs lists the shard directories; shardOf gives a digest's index in
// it.
func (s *Store) shardJobs() []shardJob {
	var jobs []shardJob
	for _, fn := range s.fns {
		for i := 0; i < 256; i++ {
			h := string(appendHex(nil, []byte{byte(i)}))
			jobs = append(jobs, shardJob{fn, s.fnDirs[fn.Enum()] + h, h})
		}
	}
	return jobs
}

// shardOf returns the index of d's shard in shardJobs.
func (s *Store) shardOf(d digest.Digest) int {
	for i, fn := range s.fns {
		if fn.Enum() == d.Function().Enum() {
			return i*256 + int(d.RawHash()[0])
		}
	}
	panic("disk: digest of an unknown function")
}

// parallelism bounds the goroutines of New. Listing is mostly waiting for
// the kernel (and for the disk when the directories are not cached), so
// there are more than cores.
func parallelism() int { return max(8, 2*runtime.GOMAXPROCS(0)) }

// scan lists every shard directory in parallel, removing temporary files, and returns the blobs found, one slice per
// shard in shardJobs order.
func (s *Store) scan(ctx context.Context) ([][]record, error) {
	// Top-level temporary files (an interrupted snapshot).
	if names, err := filepath.Glob(filepath.Join(s.dir, tmpPrefix+"*")); err == nil {
		for _, n := range names {
			os.Remove(n)
		}
	}
	jobs := s.shardJobs()
	results := make([][]record, len(jobs))
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(parallelism())
	for i, job := range jobs {
		g.Go(func() error {
			if err := ctx.Err(); err != nil {
				return err
			}
			recs, err := s.scanShard(job)
			results[i] = recs // each goroutine writes only its own slot
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return results, nil
}

// reconcile matches the snapshot against the listing, shard by shard in
// parallel, so that each lookup hits a small map that stays in the CPU
// cache rather than the whole index. It removes from shards the blobs that
// are in the snapshot, and returns the snapshot without the blobs that are
// not on disk, in its order. A blob whose content length differs between
// the two (an action-cache entry replaced after the snapshot) counts as not
// in the snapshot.
func (s *Store) reconcile(ctx context.Context, shards [][]record, snapshot []record) ([]record, error) {
	buckets := make([][]int32, len(shards)) // snapshot positions, per shard
	for p, r := range snapshot {
		b := s.shardOf(r.d)
		buckets[b] = append(buckets[b], int32(p))
	}
	found := make([]bool, len(snapshot))
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(parallelism())
	for b := range shards {
		g.Go(func() error {
			if err := ctx.Err(); err != nil {
				return err
			}
			onDisk := make(map[digest.Digest]int64, len(shards[b]))
			for _, r := range shards[b] {
				if old, dup := onDisk[r.d]; dup && old != r.n {
					s.removeDuplicate(r.d, old)
				}
				onDisk[r.d] = r.n
			}
			for _, p := range buckets[b] {
				r := snapshot[p]
				if n, ok := onDisk[r.d]; ok && n == r.n {
					found[p] = true // each p is in one bucket only
					delete(onDisk, r.d)
				}
			}
			rest := shards[b][:0]
			for _, r := range shards[b] {
				if n, ok := onDisk[r.d]; ok && n == r.n {
					rest = append(rest, r)
				}
			}
			shards[b] = rest
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	kept := snapshot[:0]
	for p, r := range snapshot {
		if found[p] {
			kept = append(kept, r)
		}
	}
	return kept, nil
}

// scanShard lists one shard directory.
func (s *Store) scanShard(job shardJob) ([]record, error) {
	fn, dir, hex := job.fn, job.dir, job.hex
	f, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // created by the first Put that needs it
	}
	if err != nil {
		return nil, fsError(err, "disk store")
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fsError(err, "disk store")
	}
	recs := make([]record, 0, len(names))
	hs := fn.HashSize()
	for _, name := range names {
		if strings.HasPrefix(name, tmpPrefix) {
			if err := unlink(dir + "/" + name); err != nil && !errors.Is(err, syscall.ENOENT) {
				return nil, fsError(err, "disk store: remove temporary file")
			}
			s.log.Info("disk store: removed an upload interrupted by a restart", "path", dir+"/"+name)
			continue
		}
		raw, size, n, ok := parseFileName(name, hs)
		if !ok || name[:2] != hex {
			s.log.Warn("disk store: ignoring unexpected file", "path", dir+"/"+name)
			continue
		}
		recs = append(recs, record{digest.FromHash(fn, raw[:hs], size), n})
	}
	return recs, nil
}

// The snapshot file is the index in recency order, least recent first:
//
//	"kilnlru1"
//	per entry: uvarint(digest function enum) | raw hash | uvarint(size) | uvarint(content length)
//	CRC-32C of all the above, little endian (4 bytes)
const snapshotMagic = "kilnlru1"

// writeSnapshot writes the index order to DIR/lru-snapshot. s.mu must be
// held. It is written to a temporary name first, so a crash leaves either no
// snapshot or a complete one; no fsync, as a torn file fails its CRC.
func (s *Store) writeSnapshot() error {
	buf := make([]byte, 0, len(snapshotMagic)+s.index.Len()*48+4)
	buf = append(buf, snapshotMagic...)
	for e := range s.index.All() {
		buf = binary.AppendUvarint(buf, uint64(e.Key.Function().Enum()))
		buf = append(buf, e.Key.RawHash()...)
		buf = binary.AppendUvarint(buf, uint64(e.Key.Size()))
		buf = binary.AppendUvarint(buf, uint64(e.Value))
	}
	buf = binary.LittleEndian.AppendUint32(buf, crc32.Checksum(buf, castagnoli))
	tmp := filepath.Join(s.dir, tmpPrefix+snapshotName)
	if err := os.WriteFile(tmp, buf, 0o644); err != nil {
		os.Remove(tmp)
		return fsError(err, "disk store: write recency snapshot")
	}
	if err := rename(tmp, filepath.Join(s.dir, snapshotName)); err != nil {
		os.Remove(tmp)
		return fsError(err, "disk store: write recency snapshot")
	}
	return nil
}

// readSnapshot reads and deletes DIR/lru-snapshot. It returns nil if there
// is none or it is damaged: the order is a hint, never worth failing for.
// Deleting it at once means a crash of this run cannot leave a stale order
// for the next one.
func (s *Store) readSnapshot() []record {
	path := filepath.Join(s.dir, snapshotName)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	os.Remove(path)
	if err != nil {
		s.log.Warn("disk store: cannot read recency snapshot", "err", err)
		return nil
	}
	recs, ok := parseSnapshot(data)
	if !ok {
		s.log.Warn("disk store: recency snapshot is damaged; ignoring it", "path", path)
		return nil
	}
	return recs
}

func parseSnapshot(data []byte) ([]record, bool) {
	if len(data) < len(snapshotMagic)+4 || string(data[:len(snapshotMagic)]) != snapshotMagic {
		return nil, false
	}
	body, sum := data[:len(data)-4], data[len(data)-4:]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(sum) {
		return nil, false
	}
	body = body[len(snapshotMagic):]
	recs := make([]record, 0, len(body)/40)
	for len(body) > 0 {
		e, k := binary.Uvarint(body)
		if k <= 0 || e == 0 || e > 1<<31 {
			return nil, false
		}
		fn, err := digest.FunctionFromEnum(repb.DigestFunction_Value(e))
		if err != nil {
			return nil, false
		}
		body = body[k:]
		hs := fn.HashSize()
		if len(body) < hs {
			return nil, false
		}
		raw := body[:hs]
		body = body[hs:]
		size, k := binary.Uvarint(body)
		if k <= 0 || size > 1<<62 {
			return nil, false
		}
		body = body[k:]
		n, k := binary.Uvarint(body)
		if k <= 0 || n > 1<<62 {
			return nil, false
		}
		body = body[k:]
		recs = append(recs, record{digest.FromHash(fn, raw, int64(size)), int64(n)})
	}
	return recs, true
}

// Close writes the recency snapshot and releases the directory. Operations
// after Close fail with Unavailable; uploads still in progress are
// discarded. Readers already returned by Get keep working.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	err := s.writeSnapshot()
	s.mu.Unlock()
	if cerr := syscall.Close(s.lockFD); err == nil && cerr != nil {
		err = fsError(cerr, "disk store: unlock")
	}
	return err
}
