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
// applies it (blobs missing from it count as least recently used) and deletes
// it; without one, the initial order is arbitrary. If the files exceed
// maxBytes (the limit was lowered), the excess is evicted.
func New(ctx context.Context, dir string, maxBytes int64, opts ...Option) (*Store, error) {
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
	snapshot := s.readSnapshot()
	shards, err := s.scan(ctx)
	if err != nil {
		return nil, err
	}

	total := 0
	for _, recs := range shards {
		total += len(recs)
	}
	s.index = lru.New[digest.Digest, int64](maxBytes, total)
	for _, recs := range shards {
		for _, r := range recs {
			if old, replaced := s.index.Insert(r.d, r.n, diskUsage(r.n)); replaced {
				// Two files for one action-cache key, from a crash between
				// the rename of the new one and the unlink of the old.
				if err := unlink(s.path(r.d, old)); err != nil {
					s.log.Error("disk store: cannot remove duplicate entry", "err", err)
				}
			}
		}
	}
	for _, r := range snapshot {
		if n, ok := s.index.Peek(r.d); ok && n == r.n {
			s.index.Touch(r.d)
		}
	}
	for _, v := range s.index.Trim() {
		if err := unlink(s.path(v.Key, v.Value)); err != nil && !errors.Is(err, syscall.ENOENT) {
			s.log.Error("disk store: cannot remove blob over the size limit", "err", err)
		}
	}
	ok = true
	return s, nil
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

// scan lists every shard directory in parallel, creating missing ones and
// removing temporary files, and returns the blobs found, one slice per shard.
func (s *Store) scan(ctx context.Context) ([][]record, error) {
	type shard struct {
		fn  digest.Function
		dir string
		hex string
	}
	var jobs []shard
	for _, fn := range functions() {
		for i := 0; i < 256; i++ {
			h := string(appendHex(nil, []byte{byte(i)}))
			jobs = append(jobs, shard{fn, s.fnDirs[fn.Enum()] + h, h})
		}
	}
	// Top-level temporary files (an interrupted snapshot).
	if names, err := filepath.Glob(filepath.Join(s.dir, tmpPrefix+"*")); err == nil {
		for _, n := range names {
			os.Remove(n)
		}
	}

	results := make([][]record, len(jobs))
	g, ctx := errgroup.WithContext(ctx)
	// Listing is mostly waiting for the kernel (and for the disk when the
	// directories are not cached): run more listings than cores.
	g.SetLimit(max(8, 2*runtime.GOMAXPROCS(0)))
	for i, job := range jobs {
		g.Go(func() error {
			if err := ctx.Err(); err != nil {
				return err
			}
			recs, err := s.scanShard(job.fn, job.dir, job.hex)
			results[i] = recs // each goroutine writes only its own slot
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return results, nil
}

// scanShard lists one shard directory.
func (s *Store) scanShard(fn digest.Function, dir, hex string) ([]record, error) {
	f, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fsError(err, "disk store")
		}
		return nil, nil
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
