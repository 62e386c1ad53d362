// Package memory is a BlobStore that keeps blobs in memory, bounded in
// total size and evicting the least recently used blob first. It serves
// tests, small deployments, and the fast tier of a tiered store.
//
// Blobs are immutable byte slices: Get hands out a reader over the stored
// slice without copying it, and Put always stores a new slice, so a reader
// never sees a blob change under it.
package memory

import (
	"bytes"
	"context"
	"io"
	"sync"

	"github.com/kiln-build/kiln/cas"
	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/cas/lru"
	"github.com/kiln-build/kiln/internal/rpcstatus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxInitialAlloc caps the buffer allocated up front from a digest's size.
// The size is only a hint (action-cache content has its own length, and a
// client may lie), so a Put of a claimed huge blob grows its buffer as bytes
// actually arrive.
const maxInitialAlloc = 16 << 20

// store is a BlobStore in memory. mu guards index; the slices in it are
// never modified once inserted.
type store struct {
	mu    sync.Mutex
	index *lru.Index[digest.Digest, []byte]
}

// New returns an empty in-memory store holding at most maxBytes of blob
// data (counted as the capacity of the stored slices; per-entry overhead is
// not counted). Blobs larger than maxBytes cannot be stored.
func New(maxBytes int64) cas.BlobStore {
	return &store{index: lru.New[digest.Digest, []byte](maxBytes, 0)}
}

// Get returns a reader over the stored blob, or NotFound.
func (s *store) Get(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	s.mu.Lock()
	b, ok := s.index.Get(d)
	s.mu.Unlock()
	if !ok {
		return nil, status.Errorf(codes.NotFound, "blob %s not found", d)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// Put reads r to the end and stores the bytes under d. Space for d.Size()
// bytes is reserved first (ResourceExhausted if it cannot be, evicting old
// blobs otherwise), and more is reserved if the content turns out longer.
// Nothing is stored unless r returns io.EOF and ctx is still live.
func (s *store) Put(ctx context.Context, d digest.Digest, r io.Reader) (err error) {
	capacity := min(d.Size(), maxInitialAlloc)
	reserved := capacity
	if err := s.reserve(reserved); err != nil {
		return rpcstatus.Wrapf(err, "put %s", d)
	}
	defer func() {
		if err != nil {
			s.mu.Lock()
			s.index.Release(reserved)
			s.mu.Unlock()
		}
	}()

	buf := make([]byte, 0, capacity)
	for {
		if err := rpcstatus.FromContext(ctx); err != nil {
			return err
		}
		if len(buf) == cap(buf) {
			// Full: either the content is exactly as long as the buffer, or
			// it is longer than the hint. Probe before growing so that an
			// exact fit keeps an exact allocation.
			var probe [1]byte
			n, err := r.Read(probe[:])
			if n == 0 && err == io.EOF {
				break
			}
			if n == 0 && err == nil {
				continue
			}
			if n > 0 {
				newCap := int64(max(2*cap(buf), 512))
				if err := s.reserve(newCap - reserved); err != nil {
					return rpcstatus.Wrapf(err, "put %s", d)
				}
				reserved = newCap
				grown := make([]byte, len(buf), newCap)
				copy(grown, buf)
				buf = append(grown, probe[0])
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			continue
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if err := rpcstatus.FromContext(ctx); err != nil {
		return err
	}
	if int64(cap(buf)) > int64(len(buf))+int64(len(buf))/4+64 {
		// Much shorter than the hint: do not hold on to the slack.
		buf = bytes.Clone(buf)
	}
	s.mu.Lock()
	s.index.Release(reserved)
	s.index.Insert(d, buf, int64(cap(buf)))
	s.mu.Unlock()
	return nil
}

// reserve sets aside n bytes, dropping the blobs evicted to make room.
func (s *store) reserve(n int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.index.Reserve(n)
	return err
}

// FindMissing returns the digests not in memory; present ones count as read.
func (s *store) FindMissing(ctx context.Context, ds []digest.Digest) ([]digest.Digest, error) {
	var missing []digest.Digest
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range ds {
		if !s.index.Touch(d) {
			missing = append(missing, d)
		}
	}
	return missing, nil
}
