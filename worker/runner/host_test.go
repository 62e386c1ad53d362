package runner_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/worker/runner"
)

// setup returns a request with a fresh build directory and private
// stdout/stderr files outside it.
func setup(t *testing.T, args ...string) runner.Request {
	t.Helper()
	base := t.TempDir()
	root := filepath.Join(base, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	return runner.Request{
		Args: args, Env: []string{"PATH=/usr/bin:/bin"}, Dir: root, BuildDir: root,
		StdoutPath: filepath.Join(base, "stdout"), StderrPath: filepath.Join(base, "stderr"),
	}
}

func run(t *testing.T, req runner.Request) (runner.Result, string, string) {
	t.Helper()
	res, err := runner.NewHost().Run(context.Background(), req)
	if err != nil {
		t.Fatalf("run %q: %v", req.Args, err)
	}
	stdout, _ := os.ReadFile(req.StdoutPath)
	stderr, _ := os.ReadFile(req.StderrPath)
	return res, string(stdout), string(stderr)
}

func requireCode(t *testing.T, err error, want codes.Code, msgPart string) {
	t.Helper()
	if status.Code(err) != want || !strings.Contains(status.Convert(err).Message(), msgPart) {
		t.Fatalf("got %v, want code %v mentioning %q", err, want, msgPart)
	}
}

func TestEnvironmentIsExactlyTheCommands(t *testing.T) {
	t.Setenv("KILN_WORKER_SECRET", "must not leak")
	for _, tc := range []struct {
		name string
		env  []string
	}{
		{"Some", []string{"A=1", "B=two words", "PATH=/nowhere"}},
		{"None", nil}, // nothing at all, not even PWD
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := setup(t, "/usr/bin/env")
			req.Env = tc.env
			res, stdout, _ := run(t, req)
			want := ""
			for _, kv := range tc.env {
				want += kv + "\n"
			}
			if res.ExitCode != 0 || stdout != want {
				t.Fatalf("exit %d, environment %q, want %q", res.ExitCode, stdout, want)
			}
		})
	}
}

func TestProgramLookup(t *testing.T) {
	req := setup(t)
	bin := filepath.Join(req.Dir, "tools", "bin")
	os.MkdirAll(bin, 0o755)
	os.WriteFile(filepath.Join(bin, "mytool"), []byte("#!/bin/sh\necho mytool \"$@\"\n"), 0o755)
	os.WriteFile(filepath.Join(bin, "plain"), []byte("not executable"), 0o644)

	t.Run("PathFromTheCommandsEnvironment", func(t *testing.T) {
		r := req
		r.Args, r.Env = []string{"mytool", "x"}, []string{"PATH=/nonexistent:" + bin}
		if _, out, _ := run(t, r); out != "mytool x\n" {
			t.Fatalf("stdout %q", out)
		}
	})
	t.Run("RelativePathEntryIsRelativeToTheWorkingDirectory", func(t *testing.T) {
		r := req
		r.Args, r.Env = []string{"mytool"}, []string{"PATH=tools/bin"}
		if _, out, _ := run(t, r); out != "mytool\n" {
			t.Fatalf("stdout %q", out)
		}
	})
	t.Run("RelativeProgramPath", func(t *testing.T) {
		r := req
		r.Dir = filepath.Join(req.Dir, "tools")
		r.Args, r.Env = []string{"bin/mytool", "y"}, nil
		if _, out, _ := run(t, r); out != "mytool y\n" {
			t.Fatalf("stdout %q", out)
		}
	})
	t.Run("WorkersPathIsNotUsed", func(t *testing.T) {
		// env is in the worker's PATH but not in the command's.
		r := req
		r.Args, r.Env = []string{"env"}, []string{"PATH=" + bin}
		_, err := runner.NewHost().Run(context.Background(), r)
		requireCode(t, err, codes.InvalidArgument, `program "env" not found in the command's PATH `+bin)
	})
	t.Run("NoPathMeansTheDefaultPath", func(t *testing.T) {
		r := req
		r.Args, r.Env = []string{"true"}, nil
		if res, _, _ := run(t, r); res.ExitCode != 0 {
			t.Fatalf("exit %d", res.ExitCode)
		}
	})
	t.Run("MissingProgram", func(t *testing.T) {
		for _, prog := range []string{"no-such-tool", "./no-such-tool", "/no/such/tool"} {
			r := req
			r.Args = []string{prog}
			_, err := runner.NewHost().Run(context.Background(), r)
			requireCode(t, err, codes.InvalidArgument, fmt.Sprintf("program %q not found", prog))
		}
	})
	t.Run("NotExecutable", func(t *testing.T) {
		r := req
		r.Args = []string{"tools/bin/plain"}
		_, err := runner.NewHost().Run(context.Background(), r)
		requireCode(t, err, codes.InvalidArgument, `program "tools/bin/plain" is not executable`)
	})
}

func TestExitCodesAndSignals(t *testing.T) {
	res, _, stderr := run(t, setup(t, "/bin/sh", "-c", "echo oops >&2; exit 3"))
	if res.ExitCode != 3 || res.Signal != "" || stderr != "oops\n" {
		t.Fatalf("exit %d signal %q stderr %q", res.ExitCode, res.Signal, stderr)
	}
	res, _, _ = run(t, setup(t, "/bin/sh", "-c", "kill -9 $$"))
	if res.ExitCode != 137 || res.Signal != "SIGKILL" || res.TimedOut {
		t.Fatalf("exit %d signal %q timed out %v", res.ExitCode, res.Signal, res.TimedOut)
	}
	if !res.Started.Before(res.Finished) {
		t.Fatalf("started %v, finished %v", res.Started, res.Finished)
	}
}

// alive reports whether pid is a running process (zombies count as dead).
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z" && fields[0] != "X"
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestTimeoutKillsTheProcessTree(t *testing.T) {
	// The shell ignores SIGTERM and leaves a background child: both must
	// die, and what was printed before the timeout must be kept.
	req := setup(t, "/bin/sh", "-c", `trap "" TERM; echo started; sleep 100 & echo $! > bg.pid; sleep 100`)
	req.Timeout = 300 * time.Millisecond
	start := time.Now()
	res, stdout, _ := run(t, req)
	if !res.TimedOut || res.ExitCode != 137 || stdout != "started\n" {
		t.Fatalf("timed out %v, exit %d, stdout %q", res.TimedOut, res.ExitCode, stdout)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("run took %v", d)
	}
	bg := readPID(t, filepath.Join(req.Dir, "bg.pid"))
	deadline := time.Now().Add(2 * time.Second)
	for alive(bg) {
		if time.Now().After(deadline) {
			syscall.Kill(bg, syscall.SIGKILL)
			t.Fatalf("background child %d survived the timeout", bg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLeftoverChildrenDieWithTheAction(t *testing.T) {
	// The command exits at once, leaving a child in its group behind.
	req := setup(t, "/bin/sh", "-c", `sleep 100 & echo $! > bg.pid`)
	res, _, _ := run(t, req)
	if res.ExitCode != 0 {
		t.Fatalf("exit %d", res.ExitCode)
	}
	bg := readPID(t, filepath.Join(req.Dir, "bg.pid"))
	deadline := time.Now().Add(2 * time.Second)
	for alive(bg) {
		if time.Now().After(deadline) {
			syscall.Kill(bg, syscall.SIGKILL)
			t.Fatalf("leftover child %d survived its action", bg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCancellationKills(t *testing.T) {
	req := setup(t, "/bin/sh", "-c", `echo partial; sleep 100`)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	res, err := runner.NewHost().Run(ctx, req)
	requireCode(t, err, codes.Canceled, "")
	stdout, _ := os.ReadFile(req.StdoutPath)
	if res.TimedOut || string(stdout) != "partial\n" {
		t.Fatalf("timed out %v, stdout %q", res.TimedOut, stdout)
	}
}

func TestLargeStdoutCostsNoMemory(t *testing.T) {
	const size = 100 << 20
	req := setup(t, "/usr/bin/head", "-c", strconv.Itoa(size), "/dev/zero")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	res, err := runner.NewHost().Run(context.Background(), req)
	runtime.ReadMemStats(&after)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("exit %d, %v", res.ExitCode, err)
	}
	fi, err := os.Stat(req.StdoutPath)
	if err != nil || fi.Size() != size {
		t.Fatalf("stdout file: %v, %v", fi, err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 4<<20 {
		t.Fatalf("running allocated %d bytes for %d bytes of stdout", grew, size)
	}
}
