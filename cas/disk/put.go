package disk

import (
	"context"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"strconv"
	"syscall"

	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/internal/rpcstatus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// putChunk is how much of an upload Put buffers before each write(2). A blob
// of at most putChunk bytes is written, trailer included, with one write.
const putChunk = 1 << 20

// Put stores the bytes of r under d. See the package doc for the steps; in
// short: reserve space (ResourceExhausted if eviction cannot make room),
// write a temporary file while computing the CRC in the same pass, append
// the trailer, and rename it into place once r returned io.EOF. On any error,
// including ctx ending, the temporary file is removed and nothing is stored.
// An error of r is returned unchanged.
//
// ctx is checked between reads of r; a Read that blocks must itself return
// when the upload is abandoned (as a gRPC stream does).
func (s *Store) Put(ctx context.Context, d digest.Digest, r io.Reader) (err error) {
	reserved := diskUsage(d.Size())
	if err := s.reserve(reserved); err != nil {
		return rpcstatus.Wrapf(err, "put %s", d)
	}
	defer func() {
		if reserved != 0 {
			s.mu.Lock()
			s.index.Release(reserved)
			s.mu.Unlock()
		}
	}()

	var pathBuf [256]byte
	shard := s.appendShardDir(pathBuf[:0], d)
	tmp, fd, err := s.createTemp(shard)
	if err != nil {
		return fsError(err, "put %s", d)
	}
	committed := false
	defer func() {
		if fd >= 0 {
			syscall.Close(fd)
		}
		if !committed {
			if err := unlink(tmp); err != nil {
				s.log.Error("disk store: cannot remove temporary file", "err", err)
			}
		}
	}()

	bp := s.getBuf()
	defer s.bufPool.Put(bp)
	buf := (*bp)[:0]
	var crc uint32
	var n int64 // content bytes read so far
	for {
		if err := rpcstatus.FromContext(ctx); err != nil {
			return err
		}
		m, rerr := r.Read(buf[len(buf):putChunk])
		if m > 0 {
			crc = crc32.Update(crc, castagnoli, buf[len(buf):len(buf)+m])
			buf = buf[:len(buf)+m]
			n += int64(m)
		}
		if rerr != nil && rerr != io.EOF {
			return rerr
		}
		if diskUsage(n) > reserved {
			// Longer than its digest says (an action-cache entry): reserve
			// half as much again as we have.
			more := diskUsage(n+n/2) - reserved
			if err := s.reserve(more); err != nil {
				return rpcstatus.Wrapf(err, "put %s: %d bytes and counting", d, n)
			}
			reserved += more
		}
		if rerr == io.EOF {
			buf = appendTrailer(buf, crc)
			if err := writeAll(fd, tmp, buf); err != nil {
				return fsError(err, "put %s", d)
			}
			break
		}
		if len(buf) == putChunk {
			if err := writeAll(fd, tmp, buf); err != nil {
				return fsError(err, "put %s", d)
			}
			buf = buf[:0]
		}
	}
	err = closeFD(fd, tmp)
	fd = -1
	if err != nil {
		return fsError(err, "put %s", d)
	}
	final := string(appendFileName(shard, d, n))

	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.closed {
			return s.closedError()
		}
		if _, ok := s.unlinking[d]; !ok {
			break
		}
		s.unlinked.Wait() // an eviction is unlinking an older copy
	}
	if err := rpcstatus.FromContext(ctx); err != nil {
		return err
	}
	if err := rename(tmp, final); err != nil {
		return fsError(err, "put %s", d)
	}
	committed = true
	old, replaced := s.index.Insert(d, n, diskUsage(n))
	s.index.Release(reserved)
	reserved = 0
	if replaced && old != n {
		// An action-cache entry replaced by content of another length
		// lives under another name. Remove the old file now, under mu, so
		// that it cannot outlive its index entry.
		if err := unlink(s.path(d, old)); err != nil && !errors.Is(err, syscall.ENOENT) {
			s.log.Error("disk store: cannot remove replaced blob", "err", err)
		}
	}
	return nil
}

// createTemp creates a new temporary file in shard ("DIR/fn/xx/").
func (s *Store) createTemp(shard []byte) (string, int, error) {
	for attempt := 0; ; attempt++ {
		name := string(strconv.AppendUint(append(shard, tmpPrefix...), s.tmpSeq.Add(1), 10))
		fd, err := createExcl(name)
		switch {
		case err == nil:
			return name, fd, nil
		case attempt < 3 && errors.Is(err, syscall.EEXIST):
			continue // left over by a crash; New removes those
		case attempt < 3 && errors.Is(err, syscall.ENOENT):
			// The first blob of this shard (or someone removed the
			// directory): make it.
			if err := os.MkdirAll(string(shard), 0o755); err != nil {
				return "", -1, err
			}
			continue
		}
		return "", -1, err
	}
}

// reserve sets aside n bytes in the index and unlinks the files of the
// blobs evicted to make room. It fails with ResourceExhausted if eviction
// cannot make room.
func (s *Store) reserve(n int64) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return s.closedError()
	}
	victims, err := s.index.Reserve(n)
	if err != nil || len(victims) == 0 {
		s.mu.Unlock()
		return err
	}
	for _, v := range victims {
		s.unlinking[v.Key] = struct{}{}
	}
	s.mu.Unlock()

	for _, v := range victims {
		if err := unlink(s.path(v.Key, v.Value)); err != nil && !errors.Is(err, syscall.ENOENT) {
			s.log.Error("disk store: cannot remove evicted blob", "err", err)
		}
	}

	s.mu.Lock()
	for _, v := range victims {
		delete(s.unlinking, v.Key)
	}
	s.unlinked.Broadcast()
	s.mu.Unlock()
	return nil
}

func (s *Store) getBuf() *[]byte {
	if bp, ok := s.bufPool.Get().(*[]byte); ok {
		return bp
	}
	b := make([]byte, putChunk+trailerLen)
	return &b
}

// fsError turns a filesystem error into a status: a full disk or quota is
// ResourceExhausted (the client may retry later; reads keep working),
// anything else Internal, a broken disk or our bug, not the client's fault.
// The message keeps the path from the *os.PathError.
func fsError(err error, format string, args ...any) error {
	code := codes.Internal
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		code = codes.ResourceExhausted
	}
	return rpcstatus.Wrapf(status.Error(code, err.Error()), format, args...)
}
