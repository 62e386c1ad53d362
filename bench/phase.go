package bench

import (
	"context"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/kiln-build/kiln/internal/rpcstatus"
)

// phaseResult is the measurement of one phase: every request it made, how
// much it moved, and how long the requests took.
type phaseResult struct {
	Name     string
	Requests int
	Blobs    int
	// Bytes is the blob content moved in either direction, not counting
	// protocol overhead. Phases that move no content (FindMissingBlobs,
	// the action cache) report 0.
	Bytes   int64
	Elapsed time.Duration
	P50     time.Duration
	P99     time.Duration
	Max     time.Duration
	// Skipped, if not empty, says why the phase did not run; the other
	// fields are then zero.
	Skipped string
}

// requestFunc performs request i of a phase and reports how many blobs and
// content bytes it moved. Errors are gRPC statuses naming what failed.
type requestFunc func(ctx context.Context, i int) (blobs int, bytes int64, err error)

// runPhase performs requests 0..n-1 with at most workers in flight, timing
// each one. The first error cancels the requests still running and fails the
// phase; the returned error keeps the gRPC code and names the phase and
// request. The phase time runs from the first request starting to the last
// one finishing.
func runPhase(ctx context.Context, name string, n, workers int, do requestFunc) (phaseResult, error) {
	var (
		rec   LatencyRecorder
		next  atomic.Int64
		blobs atomic.Int64
		bytes atomic.Int64
	)
	g, ctx := errgroup.WithContext(ctx)
	start := time.Now()
	for range min(workers, n) {
		g.Go(func() error {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return nil
				}
				t0 := time.Now()
				b, nb, err := do(ctx, i)
				if err != nil {
					// Requests cancelled because of this one fail later,
					// and errgroup keeps only the first error.
					return rpcstatus.Wrapf(err, "%s: request %d of %d", name, i+1, n)
				}
				rec.Record(time.Since(t0))
				blobs.Add(int64(b))
				bytes.Add(nb)
			}
		})
	}
	err := g.Wait()
	res := phaseResult{
		Name:     name,
		Requests: rec.Count(),
		Blobs:    int(blobs.Load()),
		Bytes:    bytes.Load(),
		Elapsed:  time.Since(start),
		P50:      rec.Percentile(50),
		P99:      rec.Percentile(99),
		Max:      rec.Max(),
	}
	return res, err
}
