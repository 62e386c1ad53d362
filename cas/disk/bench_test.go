package disk_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/cas"
	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/cas/disk"
	"github.com/kiln-build/kiln/cas/storetest"
)

// quiet drops the store's log lines, which would interleave with results.
var quiet = disk.WithLogger(slog.New(slog.DiscardHandler))

// BenchmarkDisk runs the store benchmarks in a temporary directory, or under
// KILN_BENCH_DIR (say /dev/shm, to leave the filesystem's cost out).
func BenchmarkDisk(b *testing.B) {
	storetest.Benchmark(b, func(b *testing.B) cas.BlobStore {
		dir := b.TempDir()
		if base := os.Getenv("KILN_BENCH_DIR"); base != "" {
			var err error
			if dir, err = os.MkdirTemp(base, "kiln-bench-"); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { os.RemoveAll(dir) })
		}
		s, err := disk.New(context.Background(), dir, 1<<30, quiet)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	})
}

// BenchmarkRestart measures New on a directory of many small blobs
// (KILN_RESTART_BLOBS, default 1,000,000), without and with the recency
// snapshot written by Close. The files are written directly in the
// documented format, which is much faster than Put. Setting up 1M files
// takes a minute and 4 GB of disk; run it explicitly, and set
// KILN_RESTART_DIR to keep the files for the next run:
//
//	go test -run XXX -bench BenchmarkRestart -benchtime 3x ./cas/disk
func BenchmarkRestart(b *testing.B) {
	n := 1_000_000
	if v := os.Getenv("KILN_RESTART_BLOBS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	dir := os.Getenv("KILN_RESTART_DIR") // reused across runs if set
	if dir == "" {
		dir = b.TempDir()
	}
	if _, err := os.Stat(filepath.Join(dir, "populated")); err != nil {
		start := time.Now()
		populate(b, dir, n)
		os.WriteFile(filepath.Join(dir, "populated"), nil, 0o644)
		b.Logf("wrote %d blob files in %v", n, time.Since(start))
	}
	ctx := context.Background()

	for _, snapshot := range []bool{false, true} {
		b.Run(fmt.Sprintf("blobs=%d/snapshot=%v", n, snapshot), func(b *testing.B) {
			// Prepare: a Close leaves a snapshot; remove it to test without.
			s, err := disk.New(ctx, dir, 1<<50, quiet)
			if err != nil {
				b.Fatal(err)
			}
			closeStore(b, s, dir, snapshot)
			var heap uint64
			for b.Loop() {
				s, err := disk.New(ctx, dir, 1<<50, quiet)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				heap = heapInUse()
				if missing, _ := s.FindMissing(ctx, []digest.Digest{fakeDigest(0), fakeDigest(uint64(n - 1))}); len(missing) != 0 {
					b.Fatalf("blobs missing after restart: %v", missing)
				}
				closeStore(b, s, dir, snapshot)
				runtime.KeepAlive(s)
				b.StartTimer()
			}
			b.ReportMetric(float64(heap)/float64(n), "heap-B/blob")
		})
	}
}

func closeStore(b *testing.B, s *disk.Store, dir string, keepSnapshot bool) {
	start := time.Now()
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	if keepSnapshot {
		b.Logf("Close (writing the snapshot) took %v", time.Since(start))
	} else {
		os.Remove(filepath.Join(dir, "lru-snapshot"))
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// fakeDigest is a distinct SHA-256 digest of a 100-byte blob for each i.
func fakeDigest(i uint64) digest.Digest {
	var h [32]byte
	binary.BigEndian.PutUint64(h[:], i*0x9e3779b97f4a7c15)
	binary.BigEndian.PutUint64(h[24:], i)
	return digest.FromHash(digest.SHA256, h[:], 100)
}

// populate writes n 100-byte blob files into dir in the on-disk format.
func populate(b *testing.B, dir string, n int) {
	content := make([]byte, 100)
	file := append(content, trailer(content)...)
	for _, fn := range []string{"sha256", "blake3"} {
		for i := 0; i < 256; i++ {
			if err := os.MkdirAll(filepath.Join(dir, fn, fmt.Sprintf("%02x", i)), 0o755); err != nil {
				b.Fatal(err)
			}
		}
	}
	var wg sync.WaitGroup
	const workers = 4
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				d := fakeDigest(uint64(i))
				if err := os.WriteFile(blobPath(dir, d, 100), file, 0o644); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
