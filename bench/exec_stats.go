package bench

import (
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
)

// execStats collects the measurements of an exec run's Execute calls. It
// is safe for concurrent use; the zero value is ready to use.
//
// Only total is measured by the client. The other latencies are intervals
// between timestamps of the result's ExecutedActionMetadata, set by the
// server and its workers on their own clocks: an interval whose ends come
// from different machines (queued, for a remote worker) includes their
// clock skew and may even be negative. A metric is recorded only for the
// results that carry both of its timestamps, so its sample count can be
// below the number of actions.
type execStats struct {
	total      LatencyRecorder // Execute call to the final Operation
	command    LatencyRecorder // execution_start..execution_completed
	overhead   LatencyRecorder // total - command
	queued     LatencyRecorder // queued..worker_start
	worker     LatencyRecorder // worker_start..worker_completed
	inputFetch LatencyRecorder // input_fetch_start..input_fetch_completed
	upload     LatencyRecorder // output_upload_start..output_upload_completed

	actions atomic.Int64
	cached  atomic.Int64
	// commandNanos is the sum of the command durations: divided by the
	// run's wall time it is the mean number of commands running at once.
	commandNanos atomic.Int64
}

// record adds the measurement of one action. The metadata of a cached
// result describes an earlier execution, so only its total counts.
func (s *execStats) record(x execSample) {
	s.actions.Add(1)
	s.total.Record(x.total)
	if x.cached {
		s.cached.Add(1)
		return
	}
	md := x.md
	if d, ok := between(md.GetExecutionStartTimestamp(), md.GetExecutionCompletedTimestamp()); ok {
		s.command.Record(d)
		s.overhead.Record(x.total - d)
		s.commandNanos.Add(int64(d))
	}
	intervals := []struct {
		rec      *LatencyRecorder
		from, to *timestamppb.Timestamp
	}{
		{&s.queued, md.GetQueuedTimestamp(), md.GetWorkerStartTimestamp()},
		{&s.worker, md.GetWorkerStartTimestamp(), md.GetWorkerCompletedTimestamp()},
		{&s.inputFetch, md.GetInputFetchStartTimestamp(), md.GetInputFetchCompletedTimestamp()},
		{&s.upload, md.GetOutputUploadStartTimestamp(), md.GetOutputUploadCompletedTimestamp()},
	}
	for _, iv := range intervals {
		if d, ok := between(iv.from, iv.to); ok {
			iv.rec.Record(d)
		}
	}
}

// execMetric is one latency of the report.
type execMetric struct {
	name string
	rec  *LatencyRecorder
}

// metrics returns the latencies in the order the report shows them.
func (s *execStats) metrics() []execMetric {
	return []execMetric{
		{"total", &s.total},
		{"command", &s.command},
		{"overhead", &s.overhead},
		{"queued", &s.queued},
		{"worker", &s.worker},
		{"input fetch", &s.inputFetch},
		{"upload", &s.upload},
	}
}

// between returns to - from, and false unless both timestamps are set and
// valid. A zero timestamp counts as unset: that is what a server that does
// not fill the field sends.
func between(from, to *timestamppb.Timestamp) (time.Duration, bool) {
	set := func(t *timestamppb.Timestamp) bool {
		return t.IsValid() && (t.GetSeconds() != 0 || t.GetNanos() != 0)
	}
	if !set(from) || !set(to) {
		return 0, false
	}
	return to.AsTime().Sub(from.AsTime()), true
}
