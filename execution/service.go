// Package execution implements REAPI remote execution on the server side:
// the Execution service (Execute, WaitExecution), the longrunning
// Operations service, and the endpoint workers connect to. It validates
// requests, loads Action and Command, answers from the action cache,
// checks that every input is in the CAS, hands actions to a Queue (the
// scheduler) and streams operation updates to clients.
package execution

import (
	"context"
	"log/slog"
	"sync"
	"time"

	lrpb "cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	emptypb "google.golang.org/protobuf/types/known/emptypb"

	"github.com/kiln-build/kiln/cas"
	"github.com/kiln-build/kiln/cas/actioncache"
	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/internal/rpcstatus"
	"github.com/kiln-build/kiln/scheduler"
)

// Queue is what the execution service needs of the scheduler.
type Queue interface {
	Submit(a scheduler.Action) (scheduler.OperationState, error)
	AddCompleted(instance string, d digest.Digest, resp *repb.ExecuteResponse) scheduler.OperationState
	Get(name string) (scheduler.OperationState, error)
	Cancel(name string) error
}

// Service implements the Execution service.
type Service struct {
	repb.UnimplementedExecutionServer

	blobs cas.BlobStore
	cache *actioncache.Cache
	queue Queue
	log   *slog.Logger
	// closing is closed by Close: streams following operations end, so
	// that a server shutting down does not wait for running actions.
	closing   chan struct{}
	closeOnce sync.Once
}

var _ repb.ExecutionServer = (*Service)(nil)

// New returns the Execution service.
func New(blobs cas.BlobStore, cache *actioncache.Cache, queue Queue, log *slog.Logger) *Service {
	return &Service{blobs: blobs, cache: cache, queue: queue, log: log, closing: make(chan struct{})}
}

// Close ends every stream that follows an operation with UNAVAILABLE;
// clients retry (Bazel re-executes, which hits the cache or runs again).
func (s *Service) Close() { s.closeOnce.Do(func() { close(s.closing) }) }

// Execute validates the request, answers from the action cache when it
// can, and otherwise queues the action and streams its operation until it
// completes. A client that goes away does not stop the action: it can come
// back with WaitExecution.
func (s *Service) Execute(req *repb.ExecuteRequest, stream repb.Execution_ExecuteServer) error {
	ctx := stream.Context()
	if err := digest.ValidateInstanceName(req.GetInstanceName()); err != nil {
		return err
	}
	fn, err := digest.FunctionFromEnum(req.GetDigestFunction())
	if err != nil {
		return err
	}
	actionDigest, err := digest.FromProto(fn, req.GetActionDigest())
	if err != nil {
		return rpcstatus.Wrap(err, "action_digest")
	}
	l, err := load(ctx, s.blobs, fn, actionDigest)
	if err != nil {
		return err
	}
	if !req.GetSkipCacheLookup() && !l.action.GetDoNotCache() {
		res, err := s.cache.Get(ctx, req.GetInstanceName(), actionDigest)
		switch {
		case err == nil:
			// Recorded like any operation, so that its name works with
			// GetOperation and WaitExecution.
			st := s.queue.AddCompleted(req.GetInstanceName(), actionDigest, &repb.ExecuteResponse{
				Result: res, CachedResult: true, Status: status.New(codes.OK, "").Proto(),
			})
			return stream.Send(operation(&st))
		case !rpcstatus.IsNotFound(err):
			return rpcstatus.Wrap(err, "action cache")
		}
	}
	dirs, err := s.checkInputs(ctx, l)
	if err != nil {
		return err
	}
	st, err := s.queue.Submit(scheduler.Action{
		Instance:         req.GetInstanceName(),
		Digest:           actionDigest,
		Platform:         l.platform,
		Priority:         req.GetExecutionPolicy().GetPriority(),
		DoNotCache:       l.action.GetDoNotCache(),
		ActionBytes:      l.actionBytes,
		CommandBytes:     l.commandBytes,
		InputDirectories: dirs,
	})
	if err != nil {
		return rpcstatus.Wrapf(err, "action %s", actionDigest)
	}
	return s.follow(ctx, stream, st)
}

// WaitExecution resumes streaming an operation by name, for example after
// the client's connection broke.
func (s *Service) WaitExecution(req *repb.WaitExecutionRequest, stream repb.Execution_WaitExecutionServer) error {
	st, err := s.queue.Get(req.GetName())
	if err != nil {
		return rpcstatus.Wrapf(err, "operation %q", req.GetName())
	}
	return s.follow(stream.Context(), stream, st)
}

// keepalive is how often an unchanged operation is re-sent, so that
// proxies and clients see the stream is alive during long actions.
const keepalive = 30 * time.Second

// follow sends st and every later state of the operation until it is done.
func (s *Service) follow(ctx context.Context, stream interface{ Send(*lrpb.Operation) error }, st scheduler.OperationState) error {
	timer := time.NewTimer(keepalive)
	defer timer.Stop()
	for {
		if err := stream.Send(operation(&st)); err != nil {
			return err
		}
		if st.Stage == scheduler.StageCompleted {
			return nil
		}
		select {
		case <-st.Changed:
		case <-timer.C:
		case <-ctx.Done():
			return rpcstatus.FromContext(ctx)
		case <-s.closing:
			return status.Errorf(codes.Unavailable, "operation %q: the server is shutting down", st.Name)
		}
		timer.Reset(keepalive)
		next, err := s.queue.Get(st.Name)
		if err != nil {
			return rpcstatus.Wrapf(err, "operation %q", st.Name)
		}
		st = next
	}
}

// operation renders a state as a longrunning Operation: metadata with the
// stage and action digest, and once done the ExecuteResponse. Execution
// failures live in the response's status; Operation.error is never set.
func operation(st *scheduler.OperationState) *lrpb.Operation {
	stage := map[scheduler.Stage]repb.ExecutionStage_Value{
		scheduler.StageQueued:    repb.ExecutionStage_QUEUED,
		scheduler.StageExecuting: repb.ExecutionStage_EXECUTING,
		scheduler.StageCompleted: repb.ExecutionStage_COMPLETED,
	}[st.Stage]
	md, _ := anypb.New(&repb.ExecuteOperationMetadata{Stage: stage, ActionDigest: st.Action.Proto()})
	op := &lrpb.Operation{Name: st.Name, Metadata: md}
	if st.Stage == scheduler.StageCompleted {
		op.Done = true
		resp, _ := anypb.New(st.Response)
		op.Result = &lrpb.Operation_Response{Response: resp}
	}
	return op
}

// Operations implements the longrunning Operations service for execution
// operations.
type Operations struct {
	lrpb.UnimplementedOperationsServer
	queue Queue
}

var _ lrpb.OperationsServer = (*Operations)(nil)

// NewOperations returns the Operations service.
func NewOperations(queue Queue) *Operations { return &Operations{queue: queue} }

// GetOperation returns the current state of an operation.
func (o *Operations) GetOperation(ctx context.Context, req *lrpb.GetOperationRequest) (*lrpb.Operation, error) {
	st, err := o.queue.Get(req.GetName())
	if err != nil {
		return nil, rpcstatus.Wrapf(err, "operation %q", req.GetName())
	}
	return operation(&st), nil
}

// CancelOperation cancels an operation; when no other client waits for the
// same action, the worker running it kills it.
func (o *Operations) CancelOperation(ctx context.Context, req *lrpb.CancelOperationRequest) (*emptypb.Empty, error) {
	if err := o.queue.Cancel(req.GetName()); err != nil {
		return nil, rpcstatus.Wrapf(err, "operation %q", req.GetName())
	}
	return &emptypb.Empty{}, nil
}

// ListOperations is not offered: operations are found by name.
func (o *Operations) ListOperations(context.Context, *lrpb.ListOperationsRequest) (*lrpb.ListOperationsResponse, error) {
	return nil, status.Error(codes.Unimplemented, "listing operations is not supported; use GetOperation with a name")
}
