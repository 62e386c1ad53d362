package execution

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kiln-build/kiln/api/workerpb"
	"github.com/kiln-build/kiln/cas/actioncache"
	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/internal/rpcstatus"
	"github.com/kiln-build/kiln/scheduler"
)

// WorkerQueue is what worker sessions need of the scheduler.
type WorkerQueue interface {
	AddWorker(info scheduler.WorkerInfo) (string, <-chan struct{}, error)
	RemoveWorker(id string)
	Heartbeat(id string) error
	Poll(id string) (scheduler.Poll, error)
	Started(workerID, leaseID string) error
	Complete(workerID, leaseID string, resp *repb.ExecuteResponse) error
}

// Workers implements the worker endpoint: one Connect stream per worker
// session, bridging it to the scheduler. Results are written to the action
// cache here, before the operations complete, so a client that asks again
// right after its Execute finished gets a hit. Small outputs that workers
// send with their results (instead of uploading them) are stored in the
// action cache's CAS first.
type Workers struct {
	workerpb.UnimplementedWorkersServer

	queue     WorkerQueue
	cache     *actioncache.Cache
	heartbeat time.Duration
	log       *slog.Logger
	// closing is closed by Close: sessions end so that the server can
	// stop; workers reconnect to its successor.
	closing   chan struct{}
	closeOnce sync.Once
}

var _ workerpb.WorkersServer = (*Workers)(nil)

// NewWorkers returns the worker endpoint. Workers are told to send a
// heartbeat every heartbeat interval.
func NewWorkers(queue WorkerQueue, cache *actioncache.Cache, heartbeat time.Duration, log *slog.Logger) *Workers {
	return &Workers{queue: queue, cache: cache, heartbeat: heartbeat, log: log, closing: make(chan struct{})}
}

// Close ends every worker session with UNAVAILABLE.
func (w *Workers) Close() { w.closeOnce.Do(func() { close(w.closing) }) }

// Connect runs one worker session until the stream ends or the worker is
// declared lost. Its leases are then requeued by the scheduler.
func (w *Workers) Connect(stream workerpb.Workers_ConnectServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hello := first.GetHello()
	if hello == nil {
		return status.Error(codes.InvalidArgument, "the first message of a session must be hello")
	}
	info, err := workerInfo(hello)
	if err != nil {
		return err
	}
	id, wake, err := w.queue.AddWorker(info)
	if err != nil {
		return rpcstatus.Wrapf(err, "worker %q", info.Name)
	}
	defer w.queue.RemoveWorker(id)
	log := w.log.With("worker", info.Name, "session", id)
	log.Info("worker connected", "slots", info.Slots, "properties", fmt.Sprint(info.Properties))
	defer log.Info("worker disconnected")

	if err := stream.Send(&workerpb.ServerMessage{Kind: &workerpb.ServerMessage_Welcome{Welcome: &workerpb.Welcome{
		SessionId: id, HeartbeatIntervalMs: w.heartbeat.Milliseconds(), MaxOutputBlobBytes: maxOutputBlobBytes,
	}}}); err != nil {
		return err
	}

	// The receiver goroutine is owned by this handler: it ends when the
	// stream does, which happens when the handler returns.
	msgs := make(chan *workerpb.WorkerMessage)
	recvErr := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	leases := map[string]scheduler.Action{} // leases of this session, for the action cache write
	check := time.NewTicker(w.heartbeat)
	defer check.Stop()
	for {
		poll, err := w.queue.Poll(id)
		if err != nil {
			return rpcstatus.Wrap(err, "worker session")
		}
		for _, l := range poll.Assign {
			leases[l.ID] = l.Action
			if err := stream.Send(assignment(l)); err != nil {
				return err
			}
		}
		for _, c := range poll.Cancel {
			if err := stream.Send(&workerpb.ServerMessage{Kind: &workerpb.ServerMessage_Cancellation{Cancellation: &workerpb.Cancellation{
				LeaseId: c, Reason: "cancelled by the client",
			}}}); err != nil {
				return err
			}
		}
		select {
		case <-wake:
		case <-check.C:
			// Poll above also fails once the scheduler has declared this
			// worker lost for silence.
		case m := <-msgs:
			if err := w.handle(ctx, log, id, leases, m); err != nil {
				return err
			}
		case err := <-recvErr:
			if err == io.EOF {
				return nil
			}
			return err
		case <-ctx.Done():
			return rpcstatus.FromContext(ctx)
		case <-w.closing:
			return status.Error(codes.Unavailable, "the server is shutting down; reconnect")
		}
	}
}

// handle processes one message of a worker.
func (w *Workers) handle(ctx context.Context, log *slog.Logger, id string, leases map[string]scheduler.Action, m *workerpb.WorkerMessage) error {
	switch k := m.GetKind().(type) {
	case *workerpb.WorkerMessage_Heartbeat:
		return w.queue.Heartbeat(id)
	case *workerpb.WorkerMessage_LeaseUpdate:
		u := k.LeaseUpdate
		switch u.GetStage() {
		case workerpb.LeaseUpdate_EXECUTING:
			if err := w.queue.Started(id, u.GetLeaseId()); err != nil {
				log.Debug("ignoring start of a lease that is no longer current", "lease", u.GetLeaseId(), "err", err)
			}
			return w.queue.Heartbeat(id)
		case workerpb.LeaseUpdate_COMPLETED:
			action, ok := leases[u.GetLeaseId()]
			delete(leases, u.GetLeaseId())
			resp := &repb.ExecuteResponse{}
			if err := proto.Unmarshal(u.GetExecuteResponse(), resp); err != nil {
				resp = &repb.ExecuteResponse{Status: status.Newf(codes.Internal, "worker sent a response that does not parse: %v", err).Proto()}
			}
			if ok {
				if err := w.storeOutputs(ctx, action.Digest.Function(), u.GetOutputBlobs()); err != nil {
					log.Warn("storing outputs sent with a result", "action", action.Digest.String(), "err", err)
					resp = &repb.ExecuteResponse{Status: status.Convert(rpcstatus.Wrap(err, "outputs sent with the result")).Proto()}
				}
				w.record(ctx, log, action, resp)
			}
			if err := w.queue.Complete(id, u.GetLeaseId(), resp); err != nil {
				log.Info("ignoring result of a lease that is no longer current", "lease", u.GetLeaseId(), "err", err)
			}
			return w.queue.Heartbeat(id)
		}
		return status.Errorf(codes.InvalidArgument, "lease update with stage %v", u.GetStage())
	case *workerpb.WorkerMessage_Hello:
		return status.Error(codes.InvalidArgument, "hello sent twice in one session")
	}
	return status.Error(codes.InvalidArgument, "empty worker message")
}

// maxOutputBlobBytes is what a worker may send of output blobs with one
// result (Welcome.max_output_blob_bytes); the rest it uploads to the CAS.
// Storing them holds up the session's other messages, so it is kept small.
const maxOutputBlobBytes = 1 << 20

// storeOutputs stores the blobs a worker sent with a result in the CAS,
// each checked against its digest, of function fn. Blobs the CAS has
// already are not written again (asking is an index lookup; writing one
// is a file on disk), only refreshed. Bad blobs are Internal: the worker
// is part of the service, so they are never the client's fault. Errors of
// the CAS keep their codes (ResourceExhausted when it is full).
func (w *Workers) storeOutputs(ctx context.Context, fn digest.Function, blobs []*workerpb.Blob) error {
	total := 0
	for _, b := range blobs {
		total += len(b.GetData())
	}
	if total > maxOutputBlobBytes {
		return status.Errorf(codes.Internal, "worker sent %d bytes of output blobs, more than the %d allowed", total, maxOutputBlobBytes)
	}
	ds := make([]digest.Digest, len(blobs))
	for i, b := range blobs {
		pb := &repb.Digest{}
		if err := proto.Unmarshal(b.GetDigest(), pb); err != nil {
			return status.Errorf(codes.Internal, "worker sent an output blob whose digest does not parse: %v", err)
		}
		d, err := digest.FromProto(fn, pb)
		if err != nil {
			return rpcstatus.WrapWithCode(err, codes.Internal, "worker sent an output blob with a bad digest")
		}
		if got := digest.FromBytes(fn, b.GetData()); got != d {
			return status.Errorf(codes.Internal, "worker sent output blob %s, whose bytes hash to %s", d, got)
		}
		ds[i] = d
	}
	if len(ds) == 0 {
		return nil
	}
	missing, err := w.cache.Blobs().FindMissing(ctx, ds)
	if err != nil {
		return rpcstatus.Wrap(err, "output blobs")
	}
	want := make(map[digest.Digest]bool, len(missing))
	for _, d := range missing {
		want[d] = true
	}
	for i, b := range blobs {
		if d := ds[i]; want[d] {
			delete(want, d) // each once
			if err := w.cache.Blobs().Put(ctx, d, bytes.NewReader(b.GetData())); err != nil {
				return rpcstatus.Wrapf(err, "output blob %s", d)
			}
		}
	}
	return nil
}

// record checks a worker's result and stores it in the action cache when
// it may be cached: exit code 0, no error, and not do_not_cache. A result
// that fails validation becomes an Internal error of the action instead.
func (w *Workers) record(ctx context.Context, log *slog.Logger, action scheduler.Action, resp *repb.ExecuteResponse) {
	if resp.GetResult() != nil {
		if err := actioncache.Validate(action.Digest.Function(), resp.GetResult()); err != nil {
			resp.Result = nil
			resp.Status = status.Newf(codes.Internal, "worker returned an invalid result: %v", status.Convert(err).Message()).Proto()
			return
		}
	}
	if resp.GetStatus().GetCode() != int32(codes.OK) || resp.GetResult() == nil || resp.GetResult().GetExitCode() != 0 || action.DoNotCache {
		return
	}
	if err := w.cache.Put(ctx, action.Instance, action.Digest, resp.GetResult()); err != nil {
		log.Warn("storing action result", "action", action.Digest.String(), "err", err)
	}
}

// workerInfo validates a Hello.
func workerInfo(h *workerpb.Hello) (scheduler.WorkerInfo, error) {
	if h.GetName() == "" {
		return scheduler.WorkerInfo{}, status.Error(codes.InvalidArgument, "hello: worker name is empty")
	}
	if h.GetSlots() < 1 || h.GetSlots() > 4096 {
		return scheduler.WorkerInfo{}, status.Errorf(codes.InvalidArgument, "hello: worker %q offers %d slots, want 1..4096", h.GetName(), h.GetSlots())
	}
	info := scheduler.WorkerInfo{Name: h.GetName(), Slots: int(h.GetSlots())}
	for _, p := range h.GetProperties() {
		if p.GetName() == "" {
			return scheduler.WorkerInfo{}, status.Errorf(codes.InvalidArgument, "hello: worker %q has a property with an empty name", h.GetName())
		}
		info.Properties = append(info.Properties, scheduler.Property{Name: p.GetName(), Value: p.GetValue()})
	}
	sort.Slice(info.Properties, func(i, j int) bool {
		a, b := info.Properties[i], info.Properties[j]
		return a.Name < b.Name || a.Name == b.Name && a.Value < b.Value
	})
	return info, nil
}

func assignment(l scheduler.Lease) *workerpb.ServerMessage {
	ad, _ := proto.Marshal(l.Action.Digest.Proto())
	return &workerpb.ServerMessage{Kind: &workerpb.ServerMessage_Assignment{Assignment: &workerpb.Assignment{
		LeaseId:          l.ID,
		InstanceName:     l.Action.Instance,
		DigestFunction:   int32(l.Action.Digest.Function().Enum()),
		ActionDigest:     ad,
		Action:           l.Action.ActionBytes,
		Command:          l.Action.CommandBytes,
		InputDirectories: l.Action.InputDirectories,
		QueuedUnixNanos:  l.Queued.UnixNano(),
	}}}
}
