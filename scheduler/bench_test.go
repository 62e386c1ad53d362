package scheduler_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/scheduler"
)

// BenchmarkSubmitPollComplete measures the scheduler's own cost of one
// action's life: Submit, Poll, Started, Complete and a Get of the result,
// with a handful of workers and queues and completed operations expiring as
// the clock moves, so the maps and the heap stay at a steady size.
func BenchmarkSubmitPollComplete(b *testing.B) {
	clock := newFakeClock()
	var n atomic.Int64
	s := scheduler.New(scheduler.Config{
		Clock:              clock,
		NewID:              func() string { return fmt.Sprintf("id%d", n.Add(1)) },
		CompletedRetention: time.Second,
	})
	platforms := [][]scheduler.Property{
		props("OSFamily=linux"),
		props("OSFamily=linux", "sandbox=hermetic"),
		props("OSFamily=linux", "cpu=arm64"),
		nil,
	}
	var workers []string
	for i := range 8 {
		id, _, err := s.AddWorker(scheduler.WorkerInfo{
			Name:       fmt.Sprint("w", i),
			Slots:      4,
			Properties: props("OSFamily=linux", "sandbox=hermetic", "cpu=arm64"),
		})
		if err != nil {
			b.Fatal(err)
		}
		workers = append(workers, id)
	}
	actions := make([]scheduler.Action, 1024)
	for i := range actions {
		actions[i] = scheduler.Action{
			Digest:   digest.FromBytes(digest.SHA256, fmt.Appendf(nil, "action %d", i)),
			Platform: platforms[i%len(platforms)],
		}
	}
	resp := okResponse(0)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		clock.Advance(time.Millisecond) // ~1000 completed operations retained
		w := workers[i%len(workers)]
		op, err := s.Submit(actions[i%len(actions)])
		if err != nil {
			b.Fatal(err)
		}
		p, err := s.Poll(w)
		if err != nil || len(p.Assign) != 1 {
			b.Fatalf("Poll: %v, %d leases", err, len(p.Assign))
		}
		l := p.Assign[0].ID
		if err := s.Started(w, l); err != nil {
			b.Fatal(err)
		}
		if err := s.Complete(w, l, resp); err != nil {
			b.Fatal(err)
		}
		if st, err := s.Get(op.Name); err != nil || st.Stage != scheduler.StageCompleted {
			b.Fatalf("Get: %v, stage %d", err, st.Stage)
		}
		if i%1000 == 0 {
			for _, id := range workers {
				_ = s.Heartbeat(id)
			}
		}
	}
}
