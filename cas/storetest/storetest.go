// Package storetest checks that a cas.BlobStore obeys the contract written on
// the interface. Every backend's tests call Run with a constructor; the
// behaviour that only one backend has (files on disk, restarts) is tested in
// that backend's package.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"slices"
	"sync"
	"testing"

	"github.com/kiln-build/kiln/cas"
	"github.com/kiln-build/kiln/cas/digest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// BlobSize is the size of the blobs that the eviction tests store. A
// constructor given capacity n must return a store that holds exactly n
// blobs of BlobSize bytes: storing one more evicts one.
const BlobSize = 1000

// NewStore returns an empty store that holds exactly capacity blobs of
// BlobSize bytes (and so rejects a single blob much larger than that).
type NewStore func(t *testing.T, capacity int) cas.BlobStore

// Option changes what Run checks.
type Option func(*config)

type config struct {
	contentAddressedOnly bool
}

// ContentAddressedOnly skips the checks that store content under a key it
// does not hash to (action-cache use), for stores that verify content
// against the digest.
func ContentAddressedOnly() Option {
	return func(c *config) { c.contentAddressedOnly = true }
}

// Run runs the conformance tests as subtests of t.
func Run(t *testing.T, newStore NewStore, opts ...Option) {
	ctx := context.Background()
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}

	t.Run("MissIsNotFound", func(t *testing.T) {
		// An absent blob is a NotFound miss for Get and missing for FindMissing.
		s := newStore(t, 10)
		d, _ := Blob(1, 10)
		if _, err := s.Get(ctx, d); status.Code(err) != codes.NotFound {
			t.Fatalf("Get of absent blob = %v, want NotFound", err)
		}
		RequireMissing(t, s, []digest.Digest{d}, []digest.Digest{d})
	})

	t.Run("PutThenGet", func(t *testing.T) {
		// Blobs of every size class come back byte for byte.
		s := newStore(t, 8000)
		for i, size := range []int{0, 1, 4096, 1 << 20, 1<<20 + 1, 3<<20 + 17} {
			d, data := Blob(i, size)
			if err := s.Put(ctx, d, bytes.NewReader(data)); err != nil {
				t.Fatalf("Put(%s) = %v", d, err)
			}
			RequireContent(t, s, d, data)
		}
	})

	t.Run("PutTwiceKeepsOneCopy", func(t *testing.T) {
		// Storing a present blob again is fine and does not count it twice.
		s := newStore(t, 2)
		d1, data1 := Blob(1, BlobSize)
		d2, data2 := Blob(2, BlobSize)
		for i := 0; i < 3; i++ {
			PutBytes(t, s, d1, data1)
		}
		PutBytes(t, s, d2, data2)
		RequireMissing(t, s, []digest.Digest{d1, d2}, nil)
		RequireContent(t, s, d1, data1)
	})

	t.Run("ContentLengthDiffersFromSize", func(t *testing.T) {
		// Action-cache use: the key's size is not the content length, and
		// a later Put replaces the content.
		if cfg.contentAddressedOnly {
			t.Skip("the store verifies content against the digest")
		}
		s := newStore(t, 10)
		d, _ := Blob(1, 50)
		for _, n := range []int{200, 3, 0, 50, 5000} {
			data := bytes.Repeat([]byte{byte(n)}, n)
			PutBytes(t, s, d, data)
			RequireContent(t, s, d, data)
		}
	})

	t.Run("FailingReaderStoresNothing", func(t *testing.T) {
		// A reader error mid-stream is returned and nothing becomes visible.
		s := newStore(t, 8000)
		for _, size := range []int{10, 2 << 20} {
			d, data := Blob(size, size)
			boom := status.Error(codes.InvalidArgument, "boom")
			r := io.MultiReader(bytes.NewReader(data[:size/2]), &errReader{boom})
			err := s.Put(ctx, d, r)
			if status.Code(err) != codes.InvalidArgument || !bytes.Contains([]byte(err.Error()), []byte("boom")) {
				t.Fatalf("Put with failing reader = %v, want the reader's error", err)
			}
			RequireMissing(t, s, []digest.Digest{d}, []digest.Digest{d})
			// The reservation was released: the space is usable.
			PutBytes(t, s, d, data)
		}
	})

	t.Run("CancelledMidPutStoresNothing", func(t *testing.T) {
		// Cancelling ctx while bytes are flowing aborts the Put.
		s := newStore(t, 8000)
		for _, size := range []int{10, 4 << 20} {
			d, data := Blob(size, size)
			ctx, cancel := context.WithCancel(ctx)
			r := io.MultiReader(bytes.NewReader(data[:size/2]), &funcReader{func() { cancel() }}, bytes.NewReader(data[size/2:]))
			err := s.Put(ctx, d, r)
			if status.Code(err) != codes.Canceled {
				t.Fatalf("Put cancelled midway = %v, want Canceled", err)
			}
			RequireMissing(t, s, []digest.Digest{d}, []digest.Digest{d})
		}
	})

	t.Run("TooLargeIsResourceExhausted", func(t *testing.T) {
		// A blob larger than the whole store cannot be stored.
		s := newStore(t, 2)
		d, data := Blob(1, 100*BlobSize)
		err := s.Put(ctx, d, bytes.NewReader(data))
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("Put of oversized blob = %v, want ResourceExhausted", err)
		}
		RequireMissing(t, s, []digest.Digest{d}, []digest.Digest{d})
	})

	t.Run("EvictsLeastRecentlyUsed", func(t *testing.T) {
		// Get and FindMissing refresh recency; the oldest untouched blob goes first.
		s := newStore(t, 3)
		var ds []digest.Digest
		var datas [][]byte
		for i := 0; i < 5; i++ {
			d, data := Blob(i, BlobSize)
			ds, datas = append(ds, d), append(datas, data)
		}
		PutBytes(t, s, ds[0], datas[0])
		PutBytes(t, s, ds[1], datas[1])
		PutBytes(t, s, ds[2], datas[2])
		RequireContent(t, s, ds[0], datas[0]) // order now 1 2 0
		PutBytes(t, s, ds[3], datas[3])       // evicts 1
		RequireMissing(t, s, []digest.Digest{ds[2]}, nil)
		// order now 0 3 2
		PutBytes(t, s, ds[4], datas[4]) // evicts 0
		RequireMissing(t, s, ds, []digest.Digest{ds[0], ds[1]})
	})

	t.Run("FindMissingKeepsOrder", func(t *testing.T) {
		// Missing digests come back in request order, duplicates included.
		s := newStore(t, 10)
		var ds []digest.Digest
		for i := 0; i < 6; i++ {
			d, data := Blob(i, 10)
			ds = append(ds, d)
			if i%2 == 0 {
				PutBytes(t, s, d, data)
			}
		}
		query := []digest.Digest{ds[5], ds[0], ds[1], ds[3], ds[1], ds[2]}
		RequireMissing(t, s, query, []digest.Digest{ds[5], ds[1], ds[3], ds[1]})
	})

	t.Run("ConcurrentPutsOfSameDigest", func(t *testing.T) {
		// Racing uploads of one blob all succeed and leave one good copy.
		s := newStore(t, 20000)
		for _, size := range []int{BlobSize, 2 << 20} {
			d, data := Blob(size, size)
			var wg sync.WaitGroup
			errs := make([]error, 8)
			for i := range errs {
				wg.Go(func() { errs[i] = s.Put(ctx, d, &chunkReader{data: data, chunk: 997}) })
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatalf("concurrent Put = %v", err)
				}
			}
			RequireContent(t, s, d, data)
		}
	})

	t.Run("ConcurrentMixedWithEviction", func(t *testing.T) {
		// Under eviction pressure a Get returns the right bytes or NotFound, never
		// wrong data or another error.
		s := newStore(t, 20)
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Go(func() {
				for i := 0; i < 200; i++ {
					n := (i*7 + w) % 40
					d, data := Blob(n, BlobSize)
					switch i % 3 {
					case 0, 1:
						if err := s.Put(ctx, d, bytes.NewReader(data)); err != nil {
							t.Errorf("Put(%s) = %v", d, err)
						}
					case 2:
						got, err := ReadAll(ctx, s, d)
						if err != nil && status.Code(err) != codes.NotFound {
							t.Errorf("Get(%s) = %v", d, err)
						}
						if err == nil && !bytes.Equal(got, data) {
							t.Errorf("Get(%s) returned wrong data", d)
						}
					}
				}
			})
		}
		wg.Wait()
	})
}

// Blob returns deterministic content of the given size, distinct for each
// seed, and its SHA-256 digest.
func Blob(seed, size int) (digest.Digest, []byte) {
	data := make([]byte, size)
	// A cheap deterministic fill; crypto/rand would make failures unreproducible.
	x := uint64(seed)*0x9e3779b97f4a7c15 + 1
	for i := range data {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		data[i] = byte(x)
	}
	return digest.FromBytes(digest.SHA256, data), data
}

// RandomBlob returns size random bytes and their SHA-256 digest.
func RandomBlob(size int) (digest.Digest, []byte) {
	data := make([]byte, size)
	rand.Read(data)
	return digest.FromBytes(digest.SHA256, data), data
}

// PutBytes stores data under d and fails the test on error.
func PutBytes(t testing.TB, s cas.BlobStore, d digest.Digest, data []byte) {
	t.Helper()
	if err := s.Put(context.Background(), d, bytes.NewReader(data)); err != nil {
		t.Fatalf("Put(%s) = %v", d, err)
	}
}

// ReadAll gets d and reads it to the end, returning the first error of Get,
// Read or Close.
func ReadAll(ctx context.Context, s cas.BlobStore, d digest.Digest) ([]byte, error) {
	rc, err := s.Get(ctx, d)
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	return data, err
}

// RequireContent fails the test unless d reads back as want.
func RequireContent(t testing.TB, s cas.BlobStore, d digest.Digest, want []byte) {
	t.Helper()
	got, err := ReadAll(context.Background(), s, d)
	if err != nil {
		t.Fatalf("Get(%s) = %v", d, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%s) returned %d bytes that differ from the %d stored", d, len(got), len(want))
	}
}

// RequireMissing fails the test unless FindMissing(ds) returns want.
func RequireMissing(t testing.TB, s cas.BlobStore, ds, want []digest.Digest) {
	t.Helper()
	got, err := s.FindMissing(context.Background(), ds)
	if err != nil {
		t.Fatalf("FindMissing = %v", err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("FindMissing = %v, want %v", got, want)
	}
}

// errReader always fails with err.
type errReader struct{ err error }

func (r *errReader) Read([]byte) (int, error) { return 0, r.err }

// funcReader calls f on its first Read and then reads as empty.
type funcReader struct{ f func() }

func (r *funcReader) Read([]byte) (int, error) {
	if r.f != nil {
		r.f()
		r.f = nil
	}
	return 0, io.EOF
}

// chunkReader returns data at most chunk bytes per Read, like a stream of
// messages.
type chunkReader struct {
	data  []byte
	chunk int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.chunk)], r.data)
	r.data = r.data[n:]
	return n, nil
}

// ErrReaderAfter returns a reader that yields data[:n] and then fails with err.
func ErrReaderAfter(data []byte, n int, err error) io.Reader {
	return io.MultiReader(bytes.NewReader(data[:n]), &errReader{err})
}
