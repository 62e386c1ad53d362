package scheduler

import (
	"cmp"
	"slices"
)

// Stats is a snapshot of the scheduler for metrics and the status page.
type Stats struct {
	// Queued is the number of tasks waiting in all queues.
	Queued int
	// Queues lists every queue, busy or idle, by instance then platform.
	Queues []QueueStats
	// Executing is the number of current leases (assigned or started).
	Executing int
	// Operations is the number of operations not yet completed;
	// Completed the number of completed ones still kept for Get.
	Operations, Completed int
	// Workers lists the connected workers by name, then id.
	Workers []WorkerStats
}

// QueueStats describes the queue of one (instance, platform).
type QueueStats struct {
	Instance string
	// Platform is the platform as FormatPlatform renders it.
	Platform string
	// Queued is the number of tasks waiting; Workers the number of
	// connected workers that can run them.
	Queued, Workers int
}

// WorkerStats describes one connected worker.
type WorkerStats struct {
	ID, Name string
	// Slots is how many leases it may hold; Busy how many it holds.
	Slots, Busy int
	// Properties are sorted by name, then value.
	Properties []Property
}

// Stats returns counts of queued tasks, leases, operations and workers.
// It costs O(operations + queues + workers).
func (s *Scheduler) Stats() Stats {
	s.enter()
	defer s.leave()
	var st Stats
	queues := make([]*queue, 0, len(s.queues))
	for _, q := range s.queues {
		queues = append(queues, q)
	}
	slices.SortFunc(queues, func(a, b *queue) int {
		return cmp.Or(cmp.Compare(a.instance, b.instance), slices.CompareFunc(a.platform, b.platform, compareProperties))
	})
	for _, q := range queues {
		st.Queued += len(q.tasks)
		st.Queues = append(st.Queues, QueueStats{
			Instance: q.instance,
			Platform: FormatPlatform(q.platform),
			Queued:   len(q.tasks),
			Workers:  len(q.workers),
		})
	}
	st.Executing = len(s.leases)
	for _, op := range s.operations {
		if op.stage == StageCompleted {
			st.Completed++
		} else {
			st.Operations++
		}
	}
	for _, w := range s.workers {
		st.Workers = append(st.Workers, WorkerStats{
			ID:         w.id,
			Name:       w.name,
			Slots:      w.slots,
			Busy:       len(w.leases),
			Properties: w.props.sorted(),
		})
	}
	slices.SortFunc(st.Workers, func(a, b WorkerStats) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	return st
}
