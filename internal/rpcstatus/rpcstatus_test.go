package rpcstatus_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/internal/rpcstatus"
)

func TestWrap(t *testing.T) {
	base := status.Error(codes.NotFound, "blob x")
	err := rpcstatus.Wrapf(rpcstatus.Wrap(base, "shard b"), "read %d", 3)
	if s := status.Convert(err); s.Code() != codes.NotFound || s.Message() != "read 3: shard b: blob x" {
		t.Fatalf("got %v", err)
	}
	if rpcstatus.Wrap(nil, "x") != nil || rpcstatus.WrapWithCode(nil, codes.Internal, "x") != nil {
		t.Fatal("wrapping nil must stay nil")
	}
	changed := rpcstatus.WrapWithCode(base, codes.FailedPrecondition, "input %s", "root")
	if s := status.Convert(changed); s.Code() != codes.FailedPrecondition || s.Message() != "input root: blob x" {
		t.Fatalf("got %v", changed)
	}
	// Details survive wrapping.
	st, _ := status.New(codes.FailedPrecondition, "missing").WithDetails(&errdetails.PreconditionFailure{
		Violations: []*errdetails.PreconditionFailure_Violation{{Type: "MISSING", Subject: "blobs/a/1"}},
	})
	if d := status.Convert(rpcstatus.Wrap(st.Err(), "execute")).Details(); len(d) != 1 {
		t.Fatalf("details lost: %v", d)
	}
}

func TestFromError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{fmt.Errorf("op: %w", context.Canceled), codes.Canceled},
		{errors.New("plain"), codes.Unknown},
		{status.Error(codes.Internal, "x"), codes.Internal},
		{nil, codes.OK},
	} {
		if got := rpcstatus.Code(tc.err); got != tc.want {
			t.Errorf("Code(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	if rpcstatus.FromContext(ctx) != nil {
		t.Fatal("live context reported an error")
	}
	cancel()
	if rpcstatus.Code(rpcstatus.FromContext(ctx)) != codes.Canceled {
		t.Fatal("cancelled context is not Canceled")
	}
}
