// Package runner runs an action's command: the sandbox of a kiln worker.
//
// A Runner gets a fully prepared build directory and runs one command in
// it, with exactly the Command's arguments and environment, under a
// timeout that kills the whole process tree. It knows nothing of the CAS:
// the worker materializes inputs before Run and collects outputs after.
//
// Two implementations: Host (NewHost) runs the command directly on the
// host, as the worker's user. Sandbox (NewSandbox) runs it in new
// namespaces as an unprivileged user, in the mode the action's platform
// properties choose: host (the host's filesystem read-only, the build
// directory writable) or hermetic (the input root as the whole
// filesystem). See PropertySandbox and PropertyNetwork for the property
// names, and MaybeRunInit for what a binary using Sandbox must call.
package runner

import (
	"context"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
)

// Request is one command to run.
type Request struct {
	// Args are the Command's arguments. Args[0] is the program: a path
	// when it contains '/' (relative ones are relative to Dir), otherwise
	// a name looked up in the PATH of Env, as REAPI v2.3 says.
	Args []string
	// Env is exactly the Command's environment, "NAME=value" in order.
	// Nothing of the worker's own environment is added.
	Env []string
	// Dir is the absolute working directory. It exists and is BuildDir or
	// below it.
	Dir string
	// BuildDir is the absolute path of the input root.
	BuildDir string
	// StdoutPath and StderrPath are files that Run creates (or truncates)
	// and that receive the command's output. They must lie outside
	// BuildDir, so that the command cannot see or replace them, and on
	// disk, so that a command printing gigabytes costs no memory.
	StdoutPath, StderrPath string
	// Timeout bounds the run; 0 means no limit.
	Timeout time.Duration
	// Platform holds the action's platform properties, for runners whose
	// behaviour depends on them (the host runner ignores them).
	Platform []*repb.Platform_Property
}

// Result is the outcome of a command that ran.
type Result struct {
	// ExitCode is the process's exit status, or 128 plus the signal
	// number when a signal ended it (as a shell reports it).
	ExitCode int
	// TimedOut is set when the process tree was killed because
	// Request.Timeout expired.
	TimedOut bool
	// Signal names the signal that ended the process ("SIGKILL"), or is
	// empty when it exited.
	Signal string
	// Started and Finished bound the run: from just before the process
	// started to when it ended.
	Started, Finished time.Time
	// UserTime and SystemTime are the CPU time of the process and of
	// its children that it waited for.
	UserTime, SystemTime time.Duration
	// MaxRSSBytes is the peak resident set size of the largest process.
	MaxRSSBytes int64
}

// Runner runs commands. Implementations are safe for concurrent use.
type Runner interface {
	// Run runs req.Args and waits for the whole process tree to end.
	//
	// A command that ran, whatever its exit code, returns a nil error; a
	// timeout is Result.TimedOut with a nil error and the output written
	// so far kept. Errors mean the command could not run or was stopped:
	// InvalidArgument for a program that does not exist or cannot be
	// executed, Canceled or DeadlineExceeded when ctx ended (the tree is
	// killed first; Result then describes the partial run), Internal for
	// failures of the runner itself.
	Run(ctx context.Context, req Request) (Result, error)
}
