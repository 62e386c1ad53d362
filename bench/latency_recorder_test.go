package bench_test

import (
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/bench"
)

func TestLatencyRecorder(t *testing.T) {
	t.Run("Empty", func(t *testing.T) {
		// No samples means no latency, not a panic.
		var r bench.LatencyRecorder
		if got := r.Percentile(50); got != 0 {
			t.Errorf("Percentile(50) = %v, want 0", got)
		}
		if got := r.Count(); got != 0 {
			t.Errorf("Count() = %d, want 0", got)
		}
	})

	t.Run("NearestRank", func(t *testing.T) {
		// 1ms..100ms recorded in shuffled order: percentile p is p ms.
		var r bench.LatencyRecorder
		for _, i := range rand.New(rand.NewPCG(1, 2)).Perm(100) {
			r.Record(time.Duration(i+1) * time.Millisecond)
		}
		for _, tc := range []struct {
			p    float64
			want time.Duration
		}{
			{0, 1 * time.Millisecond},     // the minimum
			{1, 1 * time.Millisecond},     // rank 1
			{50, 50 * time.Millisecond},   // the median of an even count is the lower middle
			{50.5, 51 * time.Millisecond}, // ranks round up
			{99, 99 * time.Millisecond},   // p99
			{100, 100 * time.Millisecond}, // the maximum
			{150, 100 * time.Millisecond}, // clamped
			{-5, 1 * time.Millisecond},    // clamped
			{math.NaN(), 1 * time.Millisecond},
		} {
			if got := r.Percentile(tc.p); got != tc.want {
				t.Errorf("Percentile(%v) = %v, want %v", tc.p, got, tc.want)
			}
		}
		if got := r.Max(); got != 100*time.Millisecond {
			t.Errorf("Max() = %v, want 100ms", got)
		}
	})

	t.Run("FewSamples", func(t *testing.T) {
		// With 16 samples (the large-blob phases) p99 is the slowest request.
		var r bench.LatencyRecorder
		for i := 16; i >= 1; i-- {
			r.Record(time.Duration(i) * time.Second)
		}
		if got := r.Percentile(99); got != 16*time.Second {
			t.Errorf("Percentile(99) = %v, want 16s", got)
		}
		if got := r.Percentile(50); got != 8*time.Second {
			t.Errorf("Percentile(50) = %v, want 8s", got)
		}
	})

	t.Run("RecordAfterQuery", func(t *testing.T) {
		// A sample recorded after a query is included in the next one.
		var r bench.LatencyRecorder
		r.Record(5 * time.Millisecond)
		_ = r.Percentile(50)
		r.Record(1 * time.Millisecond)
		if got := r.Percentile(0); got != time.Millisecond {
			t.Errorf("Percentile(0) = %v, want 1ms", got)
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		// Recording from many goroutines loses nothing (run with -race).
		var r bench.LatencyRecorder
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Go(func() {
				for i := 0; i < 1000; i++ {
					r.Record(time.Duration(i))
				}
			})
		}
		wg.Wait()
		if got := r.Count(); got != 8000 {
			t.Errorf("Count() = %d, want 8000", got)
		}
	})
}
