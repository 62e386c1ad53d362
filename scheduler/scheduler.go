package scheduler

import (
	"sync"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/cas/digest"
)

// Scheduler matches operations to workers. Every method is safe for
// concurrent use: it calls enter, which takes the one mutex, reads the clock
// once and runs the timeouts that are due, and leave on return. Nothing in
// the package blocks, sleeps or starts a goroutine; a driver outside calls
// Tick (every second or so, or at NextDeadline) so that timeouts run even
// when no other call comes.
//
// Who calls what:
//
//	execution service     Submit, AddCompleted, Get, Cancel
//	worker session        AddWorker, then Poll whenever wake fires, Started,
//	                      Complete, Heartbeat; RemoveWorker when the stream ends
//	driver                Tick, NextDeadline
//	metrics, status page  Stats
//
// Responses handed to Complete are shared, not copied: every operation of
// the task, and every snapshot of those operations, holds the same
// *repb.ExecuteResponse. Neither the caller of Complete nor readers of
// OperationState.Response may mutate it.
type Scheduler struct {
	clock Clock
	newID func() string
	cfg   Config
	start time.Time

	mu       sync.Mutex
	now      time.Time   // set by enter; every decision under mu uses it
	timeouts timeoutHeap // worker deadlines, queue deadlines, retention
	seq      uint64      // submission order of tasks, the last tie-break

	operations map[string]*operation   // by name, until retention ends
	tasks      map[taskKey]*task       // deduplication index: queued or running, cacheable
	queues     map[queueKey]*queue     // by (instance, platform)
	workers    map[string]*worker      // connected workers by id
	leases     map[string]*lease       // current leases by id
	gone       map[string]*goneWorkers // by platformKey of their properties
}

// Defaults for zero Config fields.
const (
	DefaultMaxAttempts        = 3
	DefaultWorkerTimeout      = 30 * time.Second
	DefaultPlatformGrace      = time.Minute
	DefaultCompletedRetention = 10 * time.Minute
)

// New returns a Scheduler with the defaults applied to cfg's zero fields.
// Start-up, from which PlatformGrace first counts, is cfg.Clock.Now(). It
// panics if Clock or NewID is missing: that is a wiring bug.
func New(cfg Config) *Scheduler {
	if cfg.Clock == nil || cfg.NewID == nil {
		panic("scheduler: Config.Clock and Config.NewID are required")
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.WorkerTimeout <= 0 {
		cfg.WorkerTimeout = DefaultWorkerTimeout
	}
	if cfg.PlatformGrace <= 0 {
		cfg.PlatformGrace = DefaultPlatformGrace
	}
	if cfg.CompletedRetention <= 0 {
		cfg.CompletedRetention = DefaultCompletedRetention
	}
	now := cfg.Clock.Now()
	return &Scheduler{
		clock:      cfg.Clock,
		newID:      cfg.NewID,
		cfg:        cfg,
		start:      now,
		now:        now,
		operations: make(map[string]*operation),
		tasks:      make(map[taskKey]*task),
		queues:     make(map[queueKey]*queue),
		workers:    make(map[string]*worker),
		leases:     make(map[string]*lease),
		gone:       make(map[string]*goneWorkers),
	}
}

// enter locks s, reads the clock once and runs every timeout that is due.
func (s *Scheduler) enter() {
	s.mu.Lock()
	if now := s.clock.Now(); now.After(s.now) {
		s.now = now // never backwards, even if the clock steps back
	}
	s.timeouts.runUntil(s, s.now)
}

func (s *Scheduler) leave() { s.mu.Unlock() }

// Submit creates an operation for a and returns its first state: queued,
// or executing if it joined a task that a worker already started.
//
// a.Platform must be sorted (InvalidArgument otherwise). If no connected
// worker can run it, Submit returns UNAVAILABLE while start-up or the last
// matching worker is less than PlatformGrace ago (clients retry), and
// FAILED_PRECONDITION naming what no worker offers after that.
//
// Unless a.DoNotCache, an operation for an (instance, digest) that is
// already queued or running joins that task; the task then runs at the
// most urgent priority of its operations.
func (s *Scheduler) Submit(a Action) (OperationState, error) {
	s.enter()
	defer s.leave()
	if err := checkSorted(a.Platform); err != nil {
		return OperationState{}, err
	}
	qkey := queueKey{instance: a.Instance, platform: platformKey(a.Platform)}
	if err := s.checkRunnable(qkey, a.Platform); err != nil {
		return OperationState{}, err
	}

	op := &operation{
		name:     s.newID(),
		instance: a.Instance,
		digest:   a.Digest,
		priority: a.Priority,
	}
	s.operations[op.name] = op

	key := taskKey{instance: a.Instance, digest: a.Digest}
	if t, ok := s.tasks[key]; ok && !a.DoNotCache {
		op.task = t
		op.stage = t.stage()
		t.ops = append(t.ops, op)
		t.setPriority()
		return op.snapshot(), nil
	}

	s.seq++
	t := &task{
		key:      key,
		queueKey: qkey,
		action:   a,
		ops:      []*operation{op},
		priority: a.Priority,
		queued:   s.now,
		seq:      s.seq,
	}
	if !a.DoNotCache {
		t.dedup = true
		s.tasks[key] = t
	}
	op.task = t
	op.stage = StageQueued
	s.push(s.getQueue(qkey, a.Platform), t)
	return op.snapshot(), nil
}

// checkRunnable returns nil if a connected worker can run actions of the
// queue key (whose platform is platform), else the
// UNAVAILABLE or FAILED_PRECONDITION that Submit documents. s.mu must be
// held.
func (s *Scheduler) checkRunnable(key queueKey, platform []Property) error {
	if q, ok := s.queues[key]; ok {
		// The queue's links are exact: no need to scan the workers.
		if len(q.workers) > 0 {
			return nil
		}
	} else {
		for _, w := range s.workers {
			if w.props.satisfies(platform) {
				return nil
			}
		}
	}
	if s.now.Sub(s.lastMatchingSeen(platform)) < s.cfg.PlatformGrace {
		return status.Errorf(codes.Unavailable, "no worker can run platform %s yet", FormatPlatform(platform))
	}
	return status.Error(codes.FailedPrecondition, s.noWorkerMessage(platform))
}

// AddCompleted records an operation for instance and action d that is
// complete from the start, with resp: an Execute answered from the action
// cache. Like every operation it can then be fetched by name (Get) for
// CompletedRetention, so the name a client was given always resolves.
// resp is shared, not copied.
func (s *Scheduler) AddCompleted(instance string, d digest.Digest, resp *repb.ExecuteResponse) OperationState {
	s.enter()
	defer s.leave()
	op := &operation{name: s.newID(), instance: instance, digest: d}
	s.operations[op.name] = op
	s.complete(op, resp)
	return op.snapshot()
}

// Get returns the state of the named operation, or NotFound if the name is
// unknown or its retention has ended.
func (s *Scheduler) Get(name string) (OperationState, error) {
	s.enter()
	defer s.leave()
	op, ok := s.operations[name]
	if !ok {
		return OperationState{}, status.Errorf(codes.NotFound, "operation %s not found", name)
	}
	return op.snapshot(), nil
}

// Cancel completes the named operation with status CANCELLED. Its task
// goes on for its other operations; a task left with none is dropped: from
// its queue if queued, and if a worker holds it, the lease is ended at
// once, its slot freed, and the lease id handed to that worker's next Poll
// in Cancel. Started and Complete for that lease then fail with
// FailedPrecondition like for a lost lease, which the session ignores.
// Cancelling a completed operation does nothing.
func (s *Scheduler) Cancel(name string) error {
	s.enter()
	defer s.leave()
	op, ok := s.operations[name]
	if !ok {
		return status.Errorf(codes.NotFound, "operation %s not found", name)
	}
	t := op.task
	if t == nil {
		return nil // already completed
	}
	t.ops = deleteOp(t.ops, op)
	s.complete(op, &repb.ExecuteResponse{Status: status.New(codes.Canceled, "cancelled by the client").Proto()})
	if len(t.ops) > 0 {
		t.setPriority()
		return nil
	}
	switch t.state {
	case taskQueued:
		s.remove(t)
	case taskAssigned, taskExecuting:
		l := t.lease
		s.release(l)
		w := l.worker
		w.cancels = append(w.cancels, l.id)
		w.signal()
	}
	t.state = taskDone
	s.forget(t)
	return nil
}

func deleteOp(ops []*operation, op *operation) []*operation {
	for i, o := range ops {
		if o == op {
			copy(ops[i:], ops[i+1:])
			ops[len(ops)-1] = nil
			return ops[:len(ops)-1]
		}
	}
	return ops
}

// AddWorker registers a worker and returns its id and wake channel. The
// scheduler sends on wake (without blocking; it has room for one signal)
// whenever Poll may have something new for the worker: queued work it can
// run while it has a free slot, a cancellation, or its own loss (Poll then
// returns NotFound). The channel is never closed. A worker with work
// already waiting finds wake signalled at once.
func (s *Scheduler) AddWorker(info WorkerInfo) (string, <-chan struct{}, error) {
	s.enter()
	defer s.leave()
	if info.Slots < 1 {
		return "", nil, status.Errorf(codes.InvalidArgument, "worker %q offers %d slots, want at least 1", info.Name, info.Slots)
	}
	w := &worker{
		id:     s.newID(),
		name:   info.Name,
		props:  newPropertySet(info.Properties),
		slots:  info.Slots,
		leases: make(map[string]*lease),
		queues: make(map[*queue]struct{}),
		wake:   make(chan struct{}, 1),
	}
	s.workers[w.id] = w
	s.heard(w)
	s.timeouts.push(w.deadline, w, w.gen)
	for _, q := range s.queues {
		if w.props.satisfies(q.platform) {
			link(q, w)
			if len(q.workers) == 1 {
				s.rearmQueue(q) // tasks no longer fail for want of a worker
			}
		}
	}
	if w.hasWork() {
		w.signal()
	}
	return w.id, w.wake, nil
}

// Heartbeat tells the scheduler the worker is alive: it is lost only after
// WorkerTimeout without Heartbeat, Poll, Started or Complete. NotFound
// means the worker is unknown or already lost; its session should end.
func (s *Scheduler) Heartbeat(workerID string) error {
	s.enter()
	defer s.leave()
	_, err := s.worker(workerID)
	return err
}

// worker looks up a connected worker and counts the call as a heartbeat.
// s.mu must be held.
func (s *Scheduler) worker(id string) (*worker, error) {
	w, ok := s.workers[id]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "worker %s not found (lost or never connected)", id)
	}
	s.heard(w)
	return w, nil
}

// RemoveWorker is called when a worker's session ends. Every lease the
// worker held is lost: its task goes back to the front of its priority
// class in its queue, keeping its original queued time, or fails with
// UNAVAILABLE once MaxAttempts leases were lost. Unknown ids are ignored.
func (s *Scheduler) RemoveWorker(workerID string) {
	s.enter()
	defer s.leave()
	if w, ok := s.workers[workerID]; ok {
		s.loseWorker(w)
	}
}

// Poll returns what the worker must be told now: new leases for its free
// slots and the leases it must stop. Each free slot gets the most urgent
// task at the head of any queue the worker can serve: lowest priority
// value, then requeued tasks, then the earliest queued, so older actions
// are never starved by newer ones of the same priority. Cancellations are
// reported once. A new lease is "assigned": its operations stay queued
// until Started. Poll counts as a heartbeat; NotFound means the worker is
// unknown or lost.
func (s *Scheduler) Poll(workerID string) (Poll, error) {
	s.enter()
	defer s.leave()
	w, err := s.worker(workerID)
	if err != nil {
		return Poll{}, err
	}
	var p Poll
	p.Cancel, w.cancels = w.cancels, nil
	for w.free() > 0 {
		var best *task
		for q := range w.queues {
			if len(q.tasks) > 0 && (best == nil || before(q.tasks[0], best)) {
				best = q.tasks[0]
			}
		}
		if best == nil {
			break
		}
		s.remove(best)
		l := &lease{id: s.newID(), task: best, worker: w}
		best.state = taskAssigned
		best.lease = l
		w.leases[l.id] = l
		s.leases[l.id] = l
		a := best.action
		a.Priority = best.priority
		p.Assign = append(p.Assign, Lease{ID: l.id, Action: a, Queued: best.queued})
	}
	return p, nil
}

// currentLease returns the lease if it is current and the worker's, and
// counts the call as the worker's heartbeat. Any other lease (lost with its
// worker, even if that worker is gone; cancelled; completed; another
// worker's; never issued) is FailedPrecondition, which the session ignores.
// s.mu must be held.
func (s *Scheduler) currentLease(workerID, leaseID string) (*lease, error) {
	l, ok := s.leases[leaseID]
	if !ok || l.worker.id != workerID {
		return nil, status.Errorf(codes.FailedPrecondition, "lease %s is no longer current for worker %s", leaseID, workerID)
	}
	s.heard(l.worker)
	return l, nil
}

// Started reports that the worker began the lease: its operations move to
// StageExecuting. Reporting it twice is harmless. FailedPrecondition means
// the lease is not current (see Complete); the caller ignores it.
func (s *Scheduler) Started(workerID, leaseID string) error {
	s.enter()
	defer s.leave()
	l, err := s.currentLease(workerID, leaseID)
	if err != nil {
		return err
	}
	if !l.started {
		l.started = true
		l.task.state = taskExecuting
		s.setStage(l.task)
	}
	return nil
}

// Complete reports the outcome of a lease (a failed action is a response
// with a status, not an error). Every operation of the task completes with
// resp, which is shared, not copied: the caller must not mutate it
// afterwards. The slot is freed and the worker woken if work is queued for
// it. A result for a lease that is no longer current (lost with its
// worker, cancelled, already completed) changes nothing and returns
// FailedPrecondition, also when the worker itself is gone.
func (s *Scheduler) Complete(workerID, leaseID string, resp *repb.ExecuteResponse) error {
	s.enter()
	defer s.leave()
	l, err := s.currentLease(workerID, leaseID)
	if err != nil {
		return err
	}
	s.release(l)
	s.finish(l.task, resp)
	if l.worker.hasWork() {
		l.worker.signal()
	}
	return nil
}

// Tick runs the timeouts that are due: workers silent for WorkerTimeout
// are lost (as by RemoveWorker), completed operations past their retention
// are forgotten, and queued tasks whose platform has had no connected
// worker for PlatformGrace fail with FAILED_PRECONDITION.
func (s *Scheduler) Tick() {
	s.enter()
	s.leave()
}

// NextDeadline returns when the earliest pending timeout is due, so a
// driver can sleep until then instead of ticking. It may be earlier than
// needed (a worker heard from since), never later; false means none is
// pending.
func (s *Scheduler) NextDeadline() (time.Time, bool) {
	s.enter()
	defer s.leave()
	return s.timeouts.next()
}
