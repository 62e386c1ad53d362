package bench

import (
	"math"
	"slices"
	"sync"
	"time"
)

// LatencyRecorder collects the latencies of individual requests and reports
// percentiles over them. It keeps every sample, which is fine for the tens of
// thousands of requests a benchmark run makes. It is safe for concurrent use;
// the zero value is ready to use.
type LatencyRecorder struct {
	mu      sync.Mutex
	samples []time.Duration // guarded by mu; sorted whenever sorted is true
	sorted  bool            // guarded by mu
}

// Record adds one request's latency.
func (r *LatencyRecorder) Record(d time.Duration) {
	r.mu.Lock()
	r.samples = append(r.samples, d)
	r.sorted = false
	r.mu.Unlock()
}

// Count returns the number of samples recorded.
func (r *LatencyRecorder) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.samples)
}

// Percentile returns the p-th percentile by the nearest-rank method: the
// smallest recorded latency such that at least p percent of all samples are
// less than or equal to it. It is always one of the samples, never an
// interpolation. p is clamped to [0, 100]; 0 gives the minimum and 100 the
// maximum. With no samples it returns 0.
func (r *LatencyRecorder) Percentile(p float64) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.samples)
	if n == 0 {
		return 0
	}
	if !r.sorted {
		slices.Sort(r.samples)
		r.sorted = true
	}
	if math.IsNaN(p) || p < 0 {
		p = 0
	}
	rank := int(math.Ceil(min(p, 100) / 100 * float64(n))) // 1-based
	return r.samples[max(rank, 1)-1]
}

// Max returns the largest latency recorded, or 0 with no samples.
func (r *LatencyRecorder) Max() time.Duration { return r.Percentile(100) }
