package disk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"syscall"

	"github.com/kiln-build/kiln/cas/digest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Get returns a reader of the blob stored under d and makes it the most
// recently used. A blob of at most 1 MiB is read whole and checked before
// Get returns: if its file is corrupt (wrong length, magic or CRC) it is
// removed and Get returns NotFound. A larger blob streams, and its reader
// returns DataLoss instead of io.EOF if the file turns out corrupt, which is
// then removed. An indexed blob whose file has vanished is dropped from the
// index and is NotFound.
func (s *Store) Get(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	for attempt := 0; ; attempt++ {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, s.closedError()
		}
		n, ok := s.index.Get(d)
		s.mu.Unlock()
		if !ok {
			return nil, status.Errorf(codes.NotFound, "blob %s not found", d)
		}
		path := s.path(d, n)
		fd, err := openRead(path)
		if errors.Is(err, syscall.ENOENT) {
			if s.forgetMissing(d, n, path) || attempt == 2 {
				return nil, status.Errorf(codes.NotFound, "blob %s not found: its file was missing", d)
			}
			continue // replaced meanwhile (action cache): look again
		}
		if err != nil {
			return nil, fsError(err, "get %s", d)
		}
		if n <= smallBlobMax {
			return s.readSmall(d, n, fd, path)
		}
		return &blobReader{s: s, d: d, n: n, path: path, fd: fd}, nil
	}
}

// readSmall reads the whole file of a small blob with (normally) one
// pread, checks it, and closes fd.
func (s *Store) readSmall(d digest.Digest, n int64, fd int, path string) (io.ReadCloser, error) {
	defer syscall.Close(fd)
	want := int(n) + trailerLen
	buf := make([]byte, want+1) // one byte more tells a too-long file
	got, err := pread(fd, path, buf, 0)
	if err == nil && got != want {
		// Short read: the file is truncated, or the filesystem returns
		// less than asked. Read on to find out.
		var more int
		more, err = preadFull(fd, path, buf[got:], int64(got))
		got += more
	}
	if err != nil {
		return nil, fsError(err, "get %s", d)
	}
	content := buf[:n]
	if got != want {
		return nil, s.dropCorrupt(d, n, fd, path, codes.NotFound, "file has %d bytes, want %d", got, want)
	}
	if !checkTrailer(buf[n:want], crc32.Checksum(content, castagnoli)) {
		return nil, s.dropCorrupt(d, n, fd, path, codes.NotFound, "checksum mismatch")
	}
	return io.NopCloser(bytes.NewReader(content)), nil
}

// forgetMissing is called when the file of d with content length n was not
// found. It drops d from the index if the index still says n and the file is
// still missing, and reports whether d is gone. It returns false if d was
// stored again meanwhile, so that the caller looks again.
func (s *Store) forgetMissing(d digest.Digest, n int64, path string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.index.Peek(d)
	if !ok {
		return true // evicted meanwhile
	}
	if v != n {
		return false
	}
	if _, err := statID(path); !errors.Is(err, syscall.ENOENT) {
		return false
	}
	s.index.Remove(d)
	s.log.Warn("disk store: indexed blob has no file; dropped it", "digest", d.String(), "path", path)
	return true
}

// dropCorrupt removes the corrupt file that fd has open and the index entry
// of d for it, and returns the error to report, with the given code. Under
// mu, it first checks that path still names the file that was read: a new
// upload of d may have replaced it with a good copy, which must stay.
func (s *Store) dropCorrupt(d digest.Digest, n int64, fd int, path string, code codes.Code, format string, args ...any) error {
	why := fmt.Sprintf(format, args...)
	err := status.Errorf(code, "blob %s was corrupt on disk and has been removed: %s", d, why)
	id, ok := fstatID(fd)
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, serr := statID(path); !ok || serr != nil || cur != id {
		return err
	}
	if uerr := unlink(path); uerr != nil {
		s.log.Error("disk store: cannot remove corrupt blob", "err", uerr)
	}
	if v, ok := s.index.Peek(d); ok && v == n {
		s.index.Remove(d)
	}
	s.log.Warn("disk store: removed corrupt blob", "digest", d.String(), "path", path, "why", why)
	return err
}

// blobReader streams a large blob, computing the CRC as it goes, and checks
// the trailer when the content has been read. Errors are sticky.
type blobReader struct {
	s    *Store
	d    digest.Digest
	n    int64 // content length
	path string
	fd   int
	off  int64 // content bytes read so far
	crc  uint32
	err  error
}

func (br *blobReader) Read(p []byte) (int, error) {
	if br.err != nil {
		return 0, br.err
	}
	if br.off == br.n {
		br.err = br.finish()
		return 0, br.err
	}
	if int64(len(p)) > br.n-br.off {
		p = p[:br.n-br.off]
	}
	m, err := pread(br.fd, br.path, p, br.off)
	if err != nil {
		br.err = fsError(err, "get %s", br.d)
		return 0, br.err
	}
	if m == 0 {
		br.err = br.s.dropCorrupt(br.d, br.n, br.fd, br.path, codes.DataLoss, "file ends after %d of %d content bytes", br.off, br.n)
		return 0, br.err
	}
	br.crc = crc32.Update(br.crc, castagnoli, p[:m])
	br.off += int64(m)
	return m, nil
}

// finish checks the trailer after the content and that the file ends there.
func (br *blobReader) finish() error {
	var t [trailerLen + 1]byte
	got, err := preadFull(br.fd, br.path, t[:], br.n)
	if err != nil {
		return fsError(err, "get %s", br.d)
	}
	if got != trailerLen {
		return br.s.dropCorrupt(br.d, br.n, br.fd, br.path, codes.DataLoss, "file has %d bytes, want %d", br.n+int64(got), br.n+trailerLen)
	}
	if !checkTrailer(t[:trailerLen], br.crc) {
		return br.s.dropCorrupt(br.d, br.n, br.fd, br.path, codes.DataLoss, "checksum mismatch")
	}
	return io.EOF
}

// Close releases the file. Reads after Close fail.
func (br *blobReader) Close() error {
	if br.fd < 0 {
		return nil
	}
	err := closeFD(br.fd, br.path)
	br.fd = -1
	if br.err == nil {
		br.err = status.Errorf(codes.FailedPrecondition, "blob %s: read after close", br.d)
	}
	if err != nil {
		return fsError(err, "get %s", br.d)
	}
	return nil
}

// FindMissing returns the digests of ds that are not in the index, without
// touching the disk, and makes the present ones the most recently used.
func (s *Store) FindMissing(ctx context.Context, ds []digest.Digest) ([]digest.Digest, error) {
	var missing []digest.Digest
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, s.closedError()
	}
	for _, d := range ds {
		if !s.index.Touch(d) {
			missing = append(missing, d)
		}
	}
	return missing, nil
}
