package execution_test

import (
	"context"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/kiln-build/kiln/api/workerpb"
	"github.com/kiln-build/kiln/cas/digest"
)

func TestOutputsSentWithTheResult(t *testing.T) {
	// A worker may send small outputs in its COMPLETED update instead of
	// uploading them: the server stores each, checked against its digest,
	// before the result. This test is that worker, offering a property
	// the harness's own worker lacks, so that it gets the actions.
	h := newHarness(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := workerpb.NewWorkersClient(h.conn).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Hello{Hello: &workerpb.Hello{
		Name: "fake", Slots: 1, Properties: []*workerpb.Property{{Name: "fake", Value: "yes"}},
	}}}); err != nil {
		t.Fatal(err)
	}
	m, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if n := m.GetWelcome().GetMaxOutputBlobBytes(); n != 1<<20 {
		t.Fatalf("welcome allows %d bytes of output blobs, want 1 MiB", n)
	}
	platform := &repb.Platform{Properties: []*repb.Platform_Property{{Name: "fake", Value: "yes"}}}

	// run executes an action on the fake worker, which answers with
	// stdout of the given digest and sends blobs with the result.
	run := func(t *testing.T, salt string, stdout digest.Digest, blobs ...*workerpb.Blob) *repb.ExecuteResponse {
		t.Helper()
		h.t = t
		action := h.action(actionSpec{cmd: h.shell("true"), platform: platform, salt: salt})
		done := make(chan *repb.ExecuteResponse, 1)
		go func() { done <- h.mustExecute(request(action)) }()
		var lease string
		for lease == "" {
			m, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			lease = m.GetAssignment().GetLeaseId()
		}
		resp, _ := proto.Marshal(&repb.ExecuteResponse{Result: &repb.ActionResult{StdoutDigest: stdout.Proto()}})
		if err := stream.Send(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_LeaseUpdate{LeaseUpdate: &workerpb.LeaseUpdate{
			LeaseId: lease, Stage: workerpb.LeaseUpdate_COMPLETED, ExecuteResponse: resp, OutputBlobs: blobs,
		}}}); err != nil {
			t.Fatal(err)
		}
		return <-done
	}
	blob := func(d digest.Digest, data string) *workerpb.Blob {
		ds, _ := proto.Marshal(d.Proto())
		return &workerpb.Blob{Digest: ds, Data: []byte(data)}
	}

	t.Run("Stored", func(t *testing.T) {
		d := digest.FromBytes(digest.SHA256, []byte("sent along\n"))
		resp := run(t, "stored", d, blob(d, "sent along\n"))
		if resp.GetStatus().GetCode() != 0 || string(h.read(resp.GetResult().GetStdoutDigest())) != "sent along\n" {
			t.Fatalf("status %v, result %v", resp.GetStatus(), resp.GetResult())
		}
		if n := h.blobs.putsOf(d); n != 1 {
			t.Errorf("written %d times, want 1", n)
		}
	})
	t.Run("PresentBlobIsNotWrittenAgain", func(t *testing.T) {
		d := h.put([]byte("already there\n"))
		resp := run(t, "present", d, blob(d, "already there\n"))
		if resp.GetStatus().GetCode() != 0 || resp.GetResult() == nil {
			t.Fatalf("status %v, result %v", resp.GetStatus(), resp.GetResult())
		}
		if n := h.blobs.putsOf(d); n != 1 {
			t.Errorf("written %d times, want once (by the test)", n)
		}
	})
	t.Run("WrongContentFailsTheAction", func(t *testing.T) {
		d := digest.FromBytes(digest.SHA256, []byte("claimed\n"))
		resp := run(t, "wrong", d, blob(d, "something else\n"))
		if c := codes.Code(resp.GetStatus().GetCode()); c != codes.Internal || resp.GetResult() != nil {
			t.Fatalf("status %v %q, result %v; want INTERNAL and no result", c, resp.GetStatus().GetMessage(), resp.GetResult())
		}
		if missing, err := h.cas.FindMissing(context.Background(), []digest.Digest{d}); err != nil || len(missing) != 1 {
			t.Errorf("the claimed blob: missing %v, err %v; want it absent", missing, err)
		}
	})
}
