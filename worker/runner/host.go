package runner

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/internal/rpcstatus"
)

// Host runs commands directly on the host: the command sees the host's
// filesystem (Bazel's auto-configured C++ toolchains call /usr/bin/gcc)
// and runs as the worker's user.
//
// Each command leads its own process group. On timeout or cancellation,
// and again when the command exits, the whole group gets SIGKILL, so
// background children (even ones that ignore SIGTERM) never outlive their
// action. A process that leaves the group with setsid(2) or setpgid(2)
// escapes this; only the Sandbox runner, with a PID namespace whose end
// kills every process in it, closes that hole.
type Host struct{}

var _ Runner = (*Host)(nil)

// NewHost returns the host runner.
func NewHost() *Host { return &Host{} }

// Run runs req on the host. See Runner.
func (h *Host) Run(ctx context.Context, req Request) (Result, error) {
	if len(req.Args) == 0 || req.Args[0] == "" {
		return Result{}, status.Error(codes.InvalidArgument, "no program to run: arguments are empty")
	}
	for _, s := range append(append([]string(nil), req.Args...), req.Env...) {
		if strings.IndexByte(s, 0) >= 0 {
			return Result{}, status.Errorf(codes.InvalidArgument, "argument or environment variable %q contains a NUL byte", s)
		}
	}
	if !filepath.IsAbs(req.Dir) {
		return Result{}, status.Errorf(codes.Internal, "working directory %q is not absolute", req.Dir)
	}
	prog, err := lookPath(req.Args[0], req.Dir, req.Env)
	if err != nil {
		return Result{}, err
	}
	stdout, err := os.OpenFile(req.StdoutPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return Result{}, status.Errorf(codes.Internal, "stdout: %v", err)
	}
	defer stdout.Close()
	stderr, err := os.OpenFile(req.StderrPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return Result{}, status.Errorf(codes.Internal, "stderr: %v", err)
	}
	defer stderr.Close()

	env := req.Env
	if env == nil {
		env = []string{} // a nil Env would make exec inherit the worker's environment
	}
	cmd := &exec.Cmd{
		Path:   prog,
		Args:   req.Args,
		Env:    env,
		Dir:    req.Dir,
		Stdout: stdout, // *os.File: the child writes to the file directly, no copying goroutine
		Stderr: stderr,
		SysProcAttr: &syscall.SysProcAttr{
			Setpgid: true,
			// If the worker dies, its direct children die with it.
			Pdeathsig: syscall.SIGKILL,
		},
	}
	// Pdeathsig fires when the thread that forked the child exits, not the
	// process; pin this goroutine's thread so the runtime cannot retire
	// it while the command runs.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	res := Result{Started: time.Now()}
	if err := cmd.Start(); err != nil {
		if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.ENOEXEC) || errors.Is(err, syscall.ENOENT) {
			// ENOENT here is a missing interpreter of a script.
			return Result{}, status.Errorf(codes.InvalidArgument, "program %q cannot be executed: %v", req.Args[0], err)
		}
		return Result{}, status.Errorf(codes.Internal, "start %q: %v", req.Args[0], err)
	}
	pid := cmd.Process.Pid

	// Wait for the exit without reaping, so that the group id stays
	// reserved (by the zombie leader) until the last kill below.
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		var info unix.Siginfo
		for {
			err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
			if err != unix.EINTR {
				return // on other errors cmd.Wait below reports the problem
			}
		}
	}()
	var timeout <-chan time.Time
	if req.Timeout > 0 {
		t := time.NewTimer(req.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	var ctxErr error
	select {
	case <-exited:
	case <-timeout:
		res.TimedOut = true
		killGroup(pid)
		<-exited
	case <-ctx.Done():
		ctxErr = rpcstatus.FromContext(ctx)
		killGroup(pid)
		<-exited
	}
	res.Finished = time.Now()
	// Whatever the leader left running in its group dies with the action.
	killGroup(pid)
	waitErr := cmd.Wait()
	ps := cmd.ProcessState
	if ps == nil {
		return res, status.Errorf(codes.Internal, "wait for %q: %v", req.Args[0], waitErr)
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		res.ExitCode = 128 + int(ws.Signal())
		res.Signal = unix.SignalName(ws.Signal())
	} else {
		res.ExitCode = ps.ExitCode()
	}
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		res.UserTime = time.Duration(ru.Utime.Nano())
		res.SystemTime = time.Duration(ru.Stime.Nano())
		res.MaxRSSBytes = ru.Maxrss * 1024 // kilobytes on Linux
	}
	return res, ctxErr
}

// killGroup sends SIGKILL to every process of group pgid. A group that is
// already empty is fine.
func killGroup(pgid int) {
	_ = unix.Kill(-pgid, unix.SIGKILL)
}
