package bench_test

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	lrpb "cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kiln-build/kiln/bench"
	"github.com/kiln-build/kiln/cas/digest"
)

// fakeExecServer is a REAPI server, in memory, that "executes" an action
// by answering with its input file as out.txt, the way the real command
// would. Its metadata has fixed intervals (queued 1ms, input fetch 1ms,
// command 3ms, upload 1ms), so the tests can check the arithmetic of the
// report. Fields other than mu are set before the server starts.
type fakeExecServer struct {
	repb.UnimplementedCapabilitiesServer
	repb.UnimplementedContentAddressableStorageServer
	repb.UnimplementedExecutionServer

	execDisabled bool
	// fail, if set, gives the exit code and stderr of the action whose
	// input file has this content.
	fail func(input string) (exitCode int32, stderr string)
	// wrongOutput makes every out.txt the empty blob.
	wrongOutput bool
	// dropStreams makes Execute end after the first, not done, Operation,
	// so the client has to resume with WaitExecution.
	dropStreams bool

	mu       sync.Mutex
	blobs    map[digest.Digest][]byte   // guarded by mu
	done     map[string]*lrpb.Operation // guarded by mu; by operation name
	requests []*repb.ExecuteRequest     // guarded by mu
	waits    int                        // guarded by mu: WaitExecution calls
}

// start serves f over an in-memory connection until the test ends.
func (f *fakeExecServer) start(t *testing.T) grpc.ClientConnInterface {
	f.blobs = map[digest.Digest][]byte{}
	f.done = map[string]*lrpb.Operation{}
	lis := bufconn.Listen(1 << 20)
	s := grpc.NewServer()
	repb.RegisterCapabilitiesServer(s, f)
	repb.RegisterContentAddressableStorageServer(s, f)
	repb.RegisterExecutionServer(s, f)
	go s.Serve(lis) //nolint:errcheck // ends with Stop
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); s.Stop() })
	return conn
}

func (f *fakeExecServer) GetCapabilities(context.Context, *repb.GetCapabilitiesRequest) (*repb.ServerCapabilities, error) {
	return &repb.ServerCapabilities{
		CacheCapabilities: &repb.CacheCapabilities{
			DigestFunctions:        []repb.DigestFunction_Value{repb.DigestFunction_SHA256},
			MaxBatchTotalSizeBytes: 4096, // small, so that the upload needs several batches
		},
		ExecutionCapabilities: &repb.ExecutionCapabilities{
			DigestFunction: repb.DigestFunction_SHA256, // the pre-2.3 field only
			ExecEnabled:    !f.execDisabled,
		},
	}, nil
}

func (f *fakeExecServer) FindMissingBlobs(_ context.Context, req *repb.FindMissingBlobsRequest) (*repb.FindMissingBlobsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &repb.FindMissingBlobsResponse{}
	for _, pb := range req.GetBlobDigests() {
		if _, ok := f.blobs[digest.MustNew(digest.SHA256, pb.GetHash(), pb.GetSizeBytes())]; !ok {
			resp.MissingBlobDigests = append(resp.MissingBlobDigests, pb)
		}
	}
	return resp, nil
}

func (f *fakeExecServer) BatchUpdateBlobs(_ context.Context, req *repb.BatchUpdateBlobsRequest) (*repb.BatchUpdateBlobsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &repb.BatchUpdateBlobsResponse{}
	for _, r := range req.GetRequests() {
		f.blobs[digest.MustNew(digest.SHA256, r.GetDigest().GetHash(), r.GetDigest().GetSizeBytes())] = r.GetData()
		resp.Responses = append(resp.Responses, &repb.BatchUpdateBlobsResponse_Response{Digest: r.GetDigest(), Status: status.New(codes.OK, "").Proto()})
	}
	return resp, nil
}

// load reads a stored message, or fails like a server missing an input.
func (f *fakeExecServer) load(pb *repb.Digest, m proto.Message) ([]byte, error) {
	f.mu.Lock()
	data, ok := f.blobs[digest.MustNew(digest.SHA256, pb.GetHash(), pb.GetSizeBytes())]
	f.mu.Unlock()
	if !ok {
		return nil, status.Errorf(codes.FailedPrecondition, "blob %s/%d is missing", pb.GetHash(), pb.GetSizeBytes())
	}
	if m == nil {
		return data, nil
	}
	return data, proto.Unmarshal(data, m)
}

func (f *fakeExecServer) Execute(req *repb.ExecuteRequest, stream repb.Execution_ExecuteServer) error {
	f.mu.Lock()
	f.requests = append(f.requests, req)
	f.mu.Unlock()
	action, root := &repb.Action{}, &repb.Directory{}
	if _, err := f.load(req.GetActionDigest(), action); err != nil {
		return err
	}
	if _, err := f.load(action.GetCommandDigest(), &repb.Command{}); err != nil {
		return err
	}
	if _, err := f.load(action.GetInputRootDigest(), root); err != nil {
		return err
	}
	in := root.GetFiles()[0].GetDigest()
	input, err := f.load(in, nil)
	if err != nil {
		return err
	}
	t0 := time.Now()
	at := func(ms int) *timestamppb.Timestamp {
		return timestamppb.New(t0.Add(time.Duration(ms) * time.Millisecond))
	}
	res := &repb.ActionResult{
		OutputFiles: []*repb.OutputFile{{Path: "out.txt", Digest: in}},
		ExecutionMetadata: &repb.ExecutedActionMetadata{
			QueuedTimestamp:                at(0),
			WorkerStartTimestamp:           at(1),
			InputFetchStartTimestamp:       at(1),
			InputFetchCompletedTimestamp:   at(2),
			ExecutionStartTimestamp:        at(2),
			ExecutionCompletedTimestamp:    at(5),
			OutputUploadStartTimestamp:     at(5),
			OutputUploadCompletedTimestamp: at(6),
			WorkerCompletedTimestamp:       at(6),
		},
	}
	if f.fail != nil {
		code, stderr := f.fail(string(input))
		res.ExitCode, res.StderrRaw = code, []byte(stderr)
	}
	if f.wrongOutput {
		res.OutputFiles[0].Digest = digest.Empty(digest.SHA256).Proto()
	}
	resp, err := anypb.New(&repb.ExecuteResponse{Result: res, Status: status.New(codes.OK, "").Proto()})
	if err != nil {
		return err
	}
	name := "operations/" + req.GetActionDigest().GetHash()
	f.mu.Lock()
	f.done[name] = &lrpb.Operation{Name: name, Done: true, Result: &lrpb.Operation_Response{Response: resp}}
	f.mu.Unlock()
	if err := stream.Send(&lrpb.Operation{Name: name}); err != nil {
		return err
	}
	if f.dropStreams {
		return nil
	}
	return f.sendDone(name, stream)
}

func (f *fakeExecServer) WaitExecution(req *repb.WaitExecutionRequest, stream repb.Execution_WaitExecutionServer) error {
	f.mu.Lock()
	f.waits++
	f.mu.Unlock()
	return f.sendDone(req.GetName(), stream)
}

func (f *fakeExecServer) sendDone(name string, stream interface{ Send(*lrpb.Operation) error }) error {
	f.mu.Lock()
	op, ok := f.done[name]
	f.mu.Unlock()
	if !ok {
		return status.Errorf(codes.NotFound, "operation %q", name)
	}
	return stream.Send(op)
}

// fakeConfig is a run of 10 actions, 3 at a time, against f.
func fakeConfig(t *testing.T, f *fakeExecServer) bench.ExecConfig {
	cfg := bench.DefaultExecConfig("")
	cfg.Conn = f.start(t)
	cfg.Actions = 10
	cfg.Concurrency = 3
	return cfg
}

// TestRunExecFake checks the client against an in-memory fake server: what
// it sends, what it computes from the metadata, and that every failure
// names its action and keeps its code.
func TestRunExecFake(t *testing.T) {
	t.Run("RequestsAndFigures", func(t *testing.T) {
		// The actions are built as documented and the intervals of the
		// metadata come out exactly.
		f := &fakeExecServer{}
		cfg := fakeConfig(t, f)
		cfg.Platform = []string{"os=linux", "arch=b", "arch=a="}
		cfg.Sleep = 1500 * time.Millisecond // the fake does not sleep
		s, err := runExec(t, cfg)
		if err != nil {
			t.Fatalf("RunExec: %v", err)
		}
		if r := s.Results; r.Completed != 10 || r.CachedResults != 0 {
			t.Errorf("results = %+v, want 10 completed, none cached", r)
		}
		if s.Upload.Blobs != 31 || s.Upload.Uploaded != 31 {
			t.Errorf("upload = %+v, want 31 blobs (10 inputs, 10 roots, 10 actions, 1 command), all uploaded", s.Upload)
		}
		for _, want := range []struct {
			name    string
			samples int
			p50     float64
		}{{"command", 10, 3}, {"queued", 10, 1}, {"worker", 10, 5}, {"input fetch", 10, 1}, {"upload", 10, 1}} {
			if n, p50, _ := s.latency(t, want.name); n != want.samples || p50 != want.p50 {
				t.Errorf("latency %s: %d samples, p50 %vms; want %d, %vms", want.name, n, p50, want.samples, want.p50)
			}
		}
		if n, _, _ := s.latency(t, "overhead"); n != 10 {
			t.Errorf("overhead has %d samples, want 10", n)
		}

		f.mu.Lock()
		requests := f.requests
		f.mu.Unlock()
		if len(requests) != 10 {
			t.Fatalf("server got %d Execute requests, want 10", len(requests))
		}
		seen := map[string]bool{}
		for _, req := range requests {
			if req.GetSkipCacheLookup() || req.GetDigestFunction() != repb.DigestFunction_SHA256 {
				t.Errorf("request %v: want cache lookup allowed and SHA256", req)
			}
			seen[req.GetActionDigest().GetHash()] = true
		}
		if len(seen) != 10 {
			t.Errorf("%d distinct actions executed, want 10", len(seen))
		}
		action, cmd := &repb.Action{}, &repb.Command{}
		if _, err := f.load(requests[0].GetActionDigest(), action); err != nil {
			t.Fatal(err)
		}
		if _, err := f.load(action.GetCommandDigest(), cmd); err != nil {
			t.Fatal(err)
		}
		wantPlatform := &repb.Platform{Properties: []*repb.Platform_Property{
			{Name: "arch", Value: "a="}, {Name: "arch", Value: "b"}, {Name: "os", Value: "linux"},
		}}
		wantCmd := &repb.Command{
			Arguments:            []string{"/bin/sh", "-c", "sleep 1.5 && cat in.txt > out.txt"},
			EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/usr/bin:/bin"}},
			OutputFiles:          []string{"out.txt"},
			OutputPaths:          []string{"out.txt"},
			Platform:             wantPlatform,
		}
		if !proto.Equal(cmd, wantCmd) {
			t.Errorf("command = %v, want %v", cmd, wantCmd)
		}
		if !proto.Equal(action.GetPlatform(), wantPlatform) || action.GetDoNotCache() || !proto.Equal(action.GetTimeout(), durationpb.New(61500*time.Millisecond)) {
			t.Errorf("action = %v, want the sorted platform, caching allowed and a timeout of 61.5s", action)
		}
	})

	t.Run("ResumesWithWaitExecution", func(t *testing.T) {
		// A stream that ends before the operation is done is resumed.
		f := &fakeExecServer{dropStreams: true}
		s, err := runExec(t, fakeConfig(t, f))
		if err != nil {
			t.Fatalf("RunExec: %v", err)
		}
		f.mu.Lock()
		waits := f.waits
		f.mu.Unlock()
		if s.Results.Completed != 10 || waits != 10 {
			t.Errorf("%d completed after %d WaitExecution calls, want 10 and 10", s.Results.Completed, waits)
		}
	})

	t.Run("FailedCommandNamesAction", func(t *testing.T) {
		// A non-zero exit fails the run with the action's index and stderr.
		f := &fakeExecServer{fail: func(input string) (int32, string) {
			if strings.HasSuffix(input, ", action 3\n") {
				return 1, "cat: in.txt: No such file or directory\n"
			}
			return 0, ""
		}}
		cfg := fakeConfig(t, f)
		cfg.Concurrency = 1
		s, err := runExec(t, cfg)
		want := `Execute: action 3: operation "operations/` // the operation name holds the digest
		wantEnd := `: the command exited with code 1: stderr "cat: in.txt: No such file or directory\n"`
		if status.Code(err) != codes.Internal || !strings.HasPrefix(status.Convert(err).Message(), want) || !strings.HasSuffix(err.Error(), wantEnd) {
			t.Fatalf("RunExec = %v, want Internal %q...%q", err, want, wantEnd)
		}
		if s.Results != nil {
			t.Errorf("a failed run reported results: %+v", s.Results)
		}
	})

	t.Run("WrongOutputIsDataLoss", func(t *testing.T) {
		// An out.txt that is not a copy of in.txt is lost data.
		_, err := runExec(t, fakeConfig(t, &fakeExecServer{wrongOutput: true}))
		if status.Code(err) != codes.DataLoss || !strings.Contains(err.Error(), "output out.txt has digest e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/0, want ") {
			t.Fatalf("RunExec = %v, want DataLoss about out.txt", err)
		}
	})

	t.Run("ExecutionDisabled", func(t *testing.T) {
		// A server that does not execute is refused before any upload.
		f := &fakeExecServer{execDisabled: true}
		_, err := runExec(t, fakeConfig(t, f))
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "exec_enabled is false") {
			t.Fatalf("RunExec = %v, want FailedPrecondition", err)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.blobs) != 0 {
			t.Errorf("%d blobs uploaded, want none", len(f.blobs))
		}
	})

	t.Run("TextReport", func(t *testing.T) {
		// The report shows the settings, the command and one row per latency.
		cfg := fakeConfig(t, &fakeExecServer{})
		var out bytes.Buffer
		if err := bench.RunExec(context.Background(), cfg, &out); err != nil {
			t.Fatalf("RunExec: %v", err)
		}
		t.Log("\n" + out.String())
		for _, want := range []string{
			"kiln bench exec: server (connection given by caller), instance \"\", run ",
			"execution yes (digest functions SHA256)",
			"\ncommand: /bin/sh -c 'cat in.txt > out.txt', environment PATH=/usr/bin:/bin, output out.txt; platform: none; action timeout 1m0s\n",
			"\nuploaded 31 of 31 blobs",
			"\nexecuted 10 actions in ",
			"\ncommand            10     3.00ms     3.00ms     3.00ms\n",
			"\nqueued             10     1.00ms     1.00ms     1.00ms\n",
		} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("report lacks %q:\n%s", want, out.String())
			}
		}
	})
}
