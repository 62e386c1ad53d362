package scheduler

import (
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/kiln-build/kiln/cas/digest"
)

// operation is what one Execute call waits on. While not completed it is
// attached to exactly one task; once completed it keeps its response for
// CompletedRetention and is then forgotten. All fields are guarded by s.mu.
type operation struct {
	name     string
	instance string
	digest   digest.Digest
	priority int32

	task     *task // nil once completed
	stage    Stage
	response *repb.ExecuteResponse

	// changed is closed on the next change and replaced lazily by the next
	// snapshot, so an operation nobody watches allocates no channel.
	changed chan struct{}
	expired bool // retention ended; op is no longer in s.operations
}

// notify wakes everyone holding a snapshot of op. s.mu must be held.
func (op *operation) notify() {
	if op.changed != nil {
		close(op.changed)
		op.changed = nil
	}
}

// snapshot returns op's state. s.mu must be held.
func (op *operation) snapshot() OperationState {
	if op.changed == nil {
		op.changed = make(chan struct{})
	}
	return OperationState{
		Name:     op.name,
		Instance: op.instance,
		Action:   op.digest,
		Stage:    op.stage,
		Response: op.response,
		Changed:  op.changed,
	}
}

// complete finishes op with resp and starts its retention. The caller
// detaches op from its task. s.mu must be held.
func (s *Scheduler) complete(op *operation, resp *repb.ExecuteResponse) {
	op.task = nil
	op.stage = StageCompleted
	op.response = resp
	op.notify()
	s.timeouts.push(s.now.Add(s.cfg.CompletedRetention), op, 0)
}

// live reports whether op's retention entry still matters. An operation
// has one such entry, pushed when it completes.
func (op *operation) live(uint64) bool { return !op.expired }

// fire ends op's retention: Get returns NotFound from now on, and watchers
// of the last snapshot are woken to find that out.
func (op *operation) fire(s *Scheduler, _ uint64) {
	op.expired = true
	if s.operations[op.name] == op {
		delete(s.operations, op.name)
	}
	op.notify()
}
