package runner

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/worker/runner/sandboxinit"
)

// The sandbox's init lives in package sandboxinit; these are its names
// here.
type (
	// Limits bound what one action may use; see sandboxinit.Limits.
	Limits   = sandboxinit.Limits
	initSpec = sandboxinit.Spec
)

const initArg0 = sandboxinit.Arg0

// MaybeRunInit is sandboxinit.MaybeRun: call it first thing in main (and in
// TestMain of tests that use a Sandbox). In a binary built with cgo the
// C init has already taken over a process started as an init; in one
// without, it refuses to go on as one.
func MaybeRunInit() { sandboxinit.MaybeRun() }

// lookPath is sandboxinit.LookPath with its error as a gRPC status.
func lookPath(prog, dir string, env []string) (string, error) {
	p, err := sandboxinit.LookPath(prog, dir, env)
	if e, ok := err.(*sandboxinit.Error); ok {
		return "", status.Error(codes.Code(e.Code), e.Message)
	}
	return p, err
}
