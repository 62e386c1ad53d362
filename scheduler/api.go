// Package scheduler is kiln's scheduler core: platform queues, operations
// and deduplicated tasks, the worker registry and leases, priorities and
// timeouts. It is pure state, in the style of etcd's raft: no I/O, no
// goroutines, time from an injected clock, read once per call. One mutex
// guards everything; timeouts are heap entries run when a call enters.
//
// The concepts, from what a client sees to what a worker runs:
//
//	operation  what one Execute call waits on; has a name; many per task
//	task       the deduplicated unit of work: one per (instance, action
//	           digest) while queued or running (do_not_cache actions are
//	           never shared); carries the most urgent priority of its
//	           operations
//	queue      tasks of one (instance, platform), ordered by priority
//	           (lower first), then by the time they were queued (FIFO)
//	worker     a connected worker: its properties, slots and leases
//	lease      one attempt of a task on a worker; lost with its worker,
//	           after which the task is requeued (up to MaxAttempts)
package scheduler

import (
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/kiln-build/kiln/cas/digest"
)

// Clock tells the time. Production uses the system clock; tests a fake.
type Clock interface {
	Now() time.Time
}

// Config configures a Scheduler. Zero values take the defaults noted.
type Config struct {
	Clock Clock         // required
	NewID func() string // unique ids for operations, workers and leases; required
	// MaxAttempts is how many leases a task gets before its operations
	// fail (default 3).
	MaxAttempts int
	// WorkerTimeout is how long a worker may stay silent before it is
	// lost and its leases requeued (default 30s).
	WorkerTimeout time.Duration
	// PlatformGrace is how long after start-up, or after a matching worker
	// was last connected, an action that no connected worker can run gets
	// UNAVAILABLE (retry later) instead of FAILED_PRECONDITION (default 1m).
	// Queued tasks whose platform has had no worker for this long fail.
	PlatformGrace time.Duration
	// CompletedRetention is how long a finished operation can still be
	// fetched by name (default 10m).
	CompletedRetention time.Duration
}

// Property is one platform property, of an action or of a worker.
type Property struct {
	Name, Value string
}

// Action is what a client asked to run, already validated and loaded.
type Action struct {
	Instance string
	Digest   digest.Digest
	// Platform is sorted by name, then value.
	Platform []Property
	// Priority: lower runs first; 0 is the default.
	Priority int32
	// DoNotCache actions are never deduplicated.
	DoNotCache bool
	// ActionBytes and CommandBytes are the serialized Action and Command,
	// handed to the worker unchanged.
	ActionBytes, CommandBytes []byte
	// InputDirectories, if not empty, are the serialized Directory
	// messages of the whole input tree, as stored in the CAS, handed to
	// the worker so that it need not fetch them (it still checks each
	// against its digest). The execution service sets them for small
	// trees only.
	InputDirectories [][]byte
}

// Stage is where an operation is.
type Stage int

// The stages, as in REAPI's ExecutionStage.
const (
	StageQueued Stage = iota + 1
	StageExecuting
	StageCompleted
)

// OperationState is a snapshot of an operation.
type OperationState struct {
	Name     string
	Instance string
	Action   digest.Digest
	Stage    Stage
	// Response is set when Stage is StageCompleted; failures are in its
	// Status, never a Go error.
	Response *repb.ExecuteResponse
	// Changed is closed when the operation's state changes after this
	// snapshot; call Get again then.
	Changed <-chan struct{}
}

// WorkerInfo describes a worker as it connects.
type WorkerInfo struct {
	Name       string
	Properties []Property
	Slots      int
}

// Lease is one attempt of a task, handed to a worker.
type Lease struct {
	ID     string
	Action Action
	Queued time.Time
}

// Poll is what a worker's session must tell its worker now.
type Poll struct {
	// Assign are new leases, at most the worker's free slots.
	Assign []Lease
	// Cancel are leases of this worker to stop: all their operations were
	// cancelled.
	Cancel []string
}
