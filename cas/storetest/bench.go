package storetest

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"sync/atomic"
	"testing"

	"github.com/kiln-build/kiln/cas"
	"github.com/kiln-build/kiln/cas/digest"
)

// Benchmark runs Put and Get benchmarks of 4 KiB and 1 MiB blobs on stores
// made by newStore, reporting MB/s. Backends do not verify content, so every
// Put stores the same bytes under a fresh made-up digest; hashing is left out
// of the figures. Puts run past the store's capacity, so they include
// eviction once the store is full. The parallel variants run 8 goroutines
// per core, as a server with many clients does: a filesystem's latency per
// file creation hides behind concurrency.
func Benchmark(b *testing.B, newStore func(b *testing.B) cas.BlobStore) {
	for _, size := range []struct {
		name string
		n    int
	}{{"4KiB", 4 << 10}, {"1MiB", 1 << 20}} {
		_, data := Blob(1, size.n)
		b.Run("Put/"+size.name, func(b *testing.B) {
			s := newStore(b)
			b.SetBytes(int64(size.n))
			i := uint64(0)
			for b.Loop() {
				i++
				if err := s.Put(context.Background(), fakeDigest(i, size.n), bytes.NewReader(data)); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("PutParallel/"+size.name, func(b *testing.B) {
			s := newStore(b)
			b.SetBytes(int64(size.n))
			var next atomic.Uint64
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := s.Put(context.Background(), fakeDigest(next.Add(1), size.n), bytes.NewReader(data)); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
		const stored = 64
		b.Run("Get/"+size.name, func(b *testing.B) {
			s := newStore(b)
			for i := range uint64(stored) {
				PutBytes(b, s, fakeDigest(i, size.n), data)
			}
			b.SetBytes(int64(size.n))
			buf := make([]byte, 256<<10)
			i := uint64(0)
			for b.Loop() {
				i++
				readInto(b, s, fakeDigest(i%stored, size.n), buf)
			}
		})
		b.Run("GetParallel/"+size.name, func(b *testing.B) {
			s := newStore(b)
			for i := range uint64(stored) {
				PutBytes(b, s, fakeDigest(i, size.n), data)
			}
			b.SetBytes(int64(size.n))
			var next atomic.Uint64
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				buf := make([]byte, 256<<10)
				for pb.Next() {
					readInto(b, s, fakeDigest(next.Add(1)%stored, size.n), buf)
				}
			})
		})
	}
}

// readInto reads a whole blob through buf, as a ByteStream server would.
func readInto(b *testing.B, s cas.BlobStore, d digest.Digest, buf []byte) {
	rc, err := s.Get(context.Background(), d)
	if err != nil {
		b.Fatal(err)
	}
	defer rc.Close()
	for {
		_, err := rc.Read(buf)
		if err == io.EOF {
			return
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

// fakeDigest makes a distinct SHA-256 digest for i without hashing anything.
func fakeDigest(i uint64, size int) digest.Digest {
	var h [32]byte
	binary.BigEndian.PutUint64(h[:], i*0x9e3779b97f4a7c15)
	binary.BigEndian.PutUint64(h[24:], i)
	return digest.FromHash(digest.SHA256, h[:], int64(size))
}
