package worker

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestJanitor(t *testing.T) {
	start := func(t *testing.T, maxDelay time.Duration) (*janitor, context.CancelFunc, *sync.WaitGroup) {
		j := newJanitor(maxDelay)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { j.run(ctx) })
		t.Cleanup(func() { cancel(); wg.Wait() })
		return j, cancel, &wg
	}
	waitFor := func(t *testing.T, what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting until %s", what)
			}
		}
	}

	t.Run("WorkWaitsForTheNextCommand", func(t *testing.T) {
		j, _, _ := start(t, time.Hour)
		j.commandStarting() // stale: before the work
		var n atomic.Int32
		j.later(func(context.Context) { n.Add(1) })
		time.Sleep(20 * time.Millisecond)
		if n.Load() != 0 {
			t.Fatal("work ran before a command started")
		}
		j.commandStarting()
		waitFor(t, "the work ran", func() bool { return n.Load() == 1 })
	})
	t.Run("WorkRunsAfterMaxDelayWithoutCommands", func(t *testing.T) {
		j, _, _ := start(t, 10*time.Millisecond)
		var n atomic.Int32
		j.later(func(context.Context) { n.Add(1) })
		j.later(func(context.Context) { n.Add(1) })
		waitFor(t, "the work ran", func() bool { return n.Load() == 2 })
	})
	t.Run("QueuedWorkRunsWhenItStops", func(t *testing.T) {
		j, cancel, wg := start(t, time.Hour)
		var n atomic.Int32
		var live atomic.Bool
		j.later(func(ctx context.Context) { n.Add(1); live.Store(ctx.Err() == nil) })
		cancel()
		wg.Wait()
		if n.Load() != 1 || live.Load() {
			t.Errorf("work ran %d times after the janitor stopped, context live %v; want once, with its context ended", n.Load(), live.Load())
		}
	})
}
