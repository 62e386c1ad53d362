package runner_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"

	"github.com/kiln-build/kiln/worker/runner"
	"github.com/kiln-build/kiln/worker/runner/runnertest"
)

// sandboxConfig is the configuration of the tests: the default user when
// the tests run as root, else the test's own.
func sandboxConfig() runner.SandboxConfig {
	if os.Geteuid() == 0 {
		return runner.SandboxConfig{UID: runner.DefaultSandboxID, GID: runner.DefaultSandboxID}
	}
	return runner.SandboxConfig{UID: os.Geteuid(), GID: os.Getegid()}
}

func TestSandboxInitWithoutC(t *testing.T) {
	// A binary built without cgo has no init: the sandbox refuses it
	// when it starts, saying why, and the binary refuses to act as one.
	bin := filepath.Join(t.TempDir(), "plaininit")
	build := exec.Command("go", "build", "-o", bin, "./testdata/plaininit")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	direct := exec.Command(bin)
	direct.Args[0] = "kiln-sandbox-init"
	out, err := direct.CombinedOutput()
	if code := direct.ProcessState.ExitCode(); err == nil || code != 2 || !strings.Contains(string(out), "built without cgo") {
		t.Fatalf("init without C: exit %d, %v, %s", code, err, out)
	}
	cfg := sandboxConfig()
	cfg.Init = bin
	_, err = runner.NewSandbox(cfg)
	if err == nil || !strings.Contains(err.Error(), "built with cgo") {
		t.Fatalf("NewSandbox with an init built without cgo: %v", err)
	}
}

func TestSandboxInitRefusesToRunOutsideItsNamespaces(t *testing.T) {
	// Started as an init without the worker's environment, the C init
	// stops before touching anything.
	direct := exec.Command(os.Args[0])
	direct.Args[0] = "kiln-sandbox-init"
	direct.Env = []string{}
	out, err := direct.CombinedOutput()
	if code := direct.ProcessState.ExitCode(); err == nil || code != 2 || !strings.Contains(string(out), "KILN_NSENTER is not set") {
		t.Fatalf("init without its environment: exit %d, %v, %s", code, err, out)
	}
}

// newSandbox returns a sandbox; a machine that cannot sandbox fails the
// test rather than skipping it, so that CI notices.
func newSandbox(t testing.TB, cfg runner.SandboxConfig) *runner.Sandbox {
	t.Helper()
	s, err := runner.NewSandbox(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// userland is what the hermetic tests put in their input roots: a shell
// and the tools the tests call, with their libraries and the ELF loader.
var userland = []string{
	"/bin/bash", "/bin/cat", "/bin/ls", "/bin/sleep", "/usr/bin/env", "/usr/bin/setsid",
	"/usr/bin/id", "/usr/bin/ps", "/usr/bin/touch", "/usr/bin/head", "/usr/bin/tr", "/bin/chmod",
}

// both runs f for each mode with a fresh build directory, holding a
// userland in hermetic mode.
func both(t *testing.T, f func(t *testing.T, mode string, req runner.Request)) {
	for _, mode := range []string{runner.SandboxHost, runner.SandboxHermetic} {
		t.Run(mode, func(t *testing.T) {
			req := setup(t)
			req.Platform = platform(runner.PropertySandbox, mode)
			if mode == runner.SandboxHermetic {
				addToTree(t, req.BuildDir, userland...)
			}
			f(t, mode, req)
		})
	}
}

// platform builds properties from name, value pairs.
func platform(nv ...string) []*repb.Platform_Property {
	var ps []*repb.Platform_Property
	for i := 0; i+1 < len(nv); i += 2 {
		ps = append(ps, &repb.Platform_Property{Name: nv[i], Value: nv[i+1]})
	}
	return ps
}

// sh runs a bash script in r and returns the result and outputs.
func sh(t *testing.T, r runner.Runner, req runner.Request, script string) (runner.Result, string, string) {
	t.Helper()
	req.Args = []string{"/bin/bash", "-c", script}
	res, err := r.Run(context.Background(), req)
	if err != nil {
		t.Fatalf("run %q: %v", script, err)
	}
	stdout, _ := os.ReadFile(req.StdoutPath)
	stderr, _ := os.ReadFile(req.StderrPath)
	return res, string(stdout), string(stderr)
}

func TestSandboxEnvironmentIsExactlyTheCommands(t *testing.T) {
	s := newSandbox(t, sandboxConfig())
	t.Setenv("KILN_WORKER_SECRET", "must not leak")
	both(t, func(t *testing.T, mode string, req runner.Request) {
		for _, env := range [][]string{{"A=1", "B=two words", "PATH=/nowhere"}, nil} {
			req.Args, req.Env = []string{"/usr/bin/env"}, env
			res, err := s.Run(context.Background(), req)
			stdout, _ := os.ReadFile(req.StdoutPath)
			want := ""
			for _, kv := range env {
				want += kv + "\n"
			}
			if err != nil || res.ExitCode != 0 || string(stdout) != want {
				t.Fatalf("exit %d, %v, environment %q, want %q", res.ExitCode, err, stdout, want)
			}
		}
	})
}

func TestSandboxProgramLookup(t *testing.T) {
	s := newSandbox(t, sandboxConfig())
	both(t, func(t *testing.T, mode string, req runner.Request) {
		bin := filepath.Join(req.Dir, "tools", "bin")
		os.MkdirAll(bin, 0o755)
		os.WriteFile(filepath.Join(bin, "mytool"), []byte("#!/bin/bash\necho mytool \"$@\"\n"), 0o755)
		t.Run("RelativePathEntryIsRelativeToTheWorkingDirectory", func(t *testing.T) {
			r := req
			r.Args, r.Env = []string{"mytool", "x"}, []string{"PATH=/nonexistent:tools/bin"}
			res, err := s.Run(context.Background(), r)
			out, _ := os.ReadFile(r.StdoutPath)
			if err != nil || string(out) != "mytool x\n" {
				t.Fatalf("exit %d, %v, stdout %q", res.ExitCode, err, out)
			}
		})
		t.Run("OverlongPathEntryIsSkipped", func(t *testing.T) {
			r := req
			r.Args, r.Env = []string{"mytool", "y"}, []string{"PATH=/" + strings.Repeat("x", 5000) + ":tools/bin"}
			res, err := s.Run(context.Background(), r)
			out, _ := os.ReadFile(r.StdoutPath)
			if err != nil || string(out) != "mytool y\n" {
				t.Fatalf("exit %d, %v, stdout %q", res.ExitCode, err, out)
			}
		})
		t.Run("MissingProgram", func(t *testing.T) {
			r := req
			r.Args, r.Env = []string{"no-such-tool"}, []string{"PATH=/usr/bin"}
			_, err := s.Run(context.Background(), r)
			requireCode(t, err, codes.InvalidArgument, `program "no-such-tool" not found in the command's PATH /usr/bin`)
		})
	})
	t.Run("HermeticLooksInTheInputRootOnly", func(t *testing.T) {
		// /usr/bin/gcc exists on the host, not in the empty input root.
		req := setup(t, "/usr/bin/gcc", "--version")
		req.Platform = platform(runner.PropertySandbox, runner.SandboxHermetic)
		_, err := s.Run(context.Background(), req)
		requireCode(t, err, codes.InvalidArgument, `program "/usr/bin/gcc" not found`)
	})
}

func TestSandboxPlatformProperties(t *testing.T) {
	s := newSandbox(t, sandboxConfig())
	for _, tc := range []struct {
		name  string
		props []*repb.Platform_Property
		code  codes.Code
		msg   string
	}{
		{"UnknownMode", platform("sandbox", "docker"), codes.InvalidArgument, `platform property sandbox="docker": want "host" or "hermetic"`},
		{"TwoModes", platform("sandbox", "hermetic", "sandbox", "host"), codes.InvalidArgument, `platform property "sandbox" has two values, "hermetic" and "host"`},
		{"UnknownNetwork", platform("network", "maybe"), codes.InvalidArgument, `platform property network="maybe": want "off" or "on"`},
		// The worker does not permit it: no worker of the right kind ran it.
		{"NetworkNotPermitted", platform("network", "on"), codes.FailedPrecondition, "platform property network=on: this worker does not permit network access"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := setup(t, "/bin/true")
			req.Platform = tc.props
			_, err := s.Run(context.Background(), req)
			requireCode(t, err, tc.code, tc.msg)
		})
	}
	t.Run("OtherPropertiesAreIgnored", func(t *testing.T) {
		req := setup(t, "/bin/true")
		req.Platform = platform("OSFamily", "linux", "network", "off", "sandbox", "host")
		if res, err := s.Run(context.Background(), req); err != nil || res.ExitCode != 0 {
			t.Fatalf("exit %d, %v", res.ExitCode, err)
		}
	})
}

func TestSandboxExitCodesAndSignals(t *testing.T) {
	s := newSandbox(t, sandboxConfig())
	both(t, func(t *testing.T, mode string, req runner.Request) {
		res, _, stderr := sh(t, s, req, "echo oops >&2; exit 3")
		if res.ExitCode != 3 || res.Signal != "" || stderr != "oops\n" {
			t.Fatalf("exit %d signal %q stderr %q", res.ExitCode, res.Signal, stderr)
		}
		res, _, _ = sh(t, s, req, "kill -9 $$")
		if res.ExitCode != 137 || res.Signal != "SIGKILL" || res.TimedOut {
			t.Fatalf("exit %d signal %q timed out %v", res.ExitCode, res.Signal, res.TimedOut)
		}
	})
}

func TestSandboxDevices(t *testing.T) {
	s := newSandbox(t, sandboxConfig())
	both(t, func(t *testing.T, mode string, req runner.Request) {
		res, out, stderr := sh(t, s, req, `echo x > /dev/null && head -c 3 /dev/urandom > r && touch /dev/shm/a && echo shm; touch /dev/new 2>/dev/null || echo read-only`)
		if r, err := os.ReadFile(filepath.Join(req.BuildDir, "r")); err != nil || len(r) != 3 {
			t.Errorf("read %q from /dev/urandom: %v", r, err)
		}
		if res.ExitCode != 0 || out != "shm\nread-only\n" || stderr != "" {
			t.Fatalf("exit %d, stdout %q, stderr %q", res.ExitCode, out, stderr)
		}
		// Scripts open the output by path: that reopens the files the
		// runner made, and needs write permission on them.
		res, out, stderr = sh(t, s, req, `echo to-stdout > /dev/stdout; echo to-stderr > /dev/stderr`)
		if res.ExitCode != 0 || out != "to-stdout\n" || stderr != "to-stderr\n" {
			t.Fatalf("exit %d, stdout %q, stderr %q", res.ExitCode, out, stderr)
		}
	})
}

func TestSandboxRunsUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the sandbox user is the worker's own when it is not root")
	}
	s := newSandbox(t, sandboxConfig())
	both(t, func(t *testing.T, mode string, req runner.Request) {
		res, out, _ := sh(t, s, req, `id -u; id -g; id -G; while read -r l; do case $l in CapEff*|CapPrm*|NoNewPrivs*) echo "$l";; esac; done < /proc/self/status`)
		want := "65534\n65534\n65534\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nNoNewPrivs:\t1\n"
		if res.ExitCode != 0 || out != want {
			t.Fatalf("exit %d, stdout %q, want %q", res.ExitCode, out, want)
		}
	})
}

func TestSandboxInputFilesStayReadOnly(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the inputs to another user")
	}
	// The worker hardlinks inputs from its file cache, owned by it and
	// read-only: the command must not be able to change them.
	s := newSandbox(t, sandboxConfig())
	both(t, func(t *testing.T, mode string, req runner.Request) {
		in := filepath.Join(req.BuildDir, "src", "input.c")
		os.MkdirAll(filepath.Dir(in), 0o755)
		os.WriteFile(in, []byte("int x;\n"), 0o444)
		res, out, _ := sh(t, s, req, `cd src; echo bad >> input.c; chmod 644 input.c; echo bad > input.c; echo ok > output.o && echo wrote`)
		if data, _ := os.ReadFile(in); string(data) != "int x;\n" || res.ExitCode != 0 || out != "wrote\n" {
			t.Fatalf("input now %q; exit %d, stdout %q", data, res.ExitCode, out)
		}
	})
}

func TestHermeticSeesOnlyItsInputRoot(t *testing.T) {
	s := newSandbox(t, sandboxConfig())
	host, err := os.ReadFile("/etc/hostname")
	if err != nil || len(bytes.TrimSpace(host)) == 0 {
		t.Skip("no /etc/hostname to hide")
	}
	req := setup(t)
	addToTree(t, req.BuildDir, userland...)
	// A file of the worker's, next to the build directory.
	secret := filepath.Join(filepath.Dir(req.BuildDir), "worker-secret")
	os.WriteFile(secret, []byte("s3cr3t"), 0o644)
	script := fmt.Sprintf(`cat /etc/hostname; cat %s; cat %s; ls -a /`, secret, os.Args[0])

	t.Run("HostModeShowsTheHost", func(t *testing.T) {
		// The control: the same script sees the host's hostname there.
		r := req
		r.Platform = platform(runner.PropertySandbox, runner.SandboxHost)
		_, out, _ := sh(t, s, r, `cat /etc/hostname`)
		if out != string(host) {
			t.Fatalf("host mode read %q from /etc/hostname, want %q", out, host)
		}
	})
	r := req
	r.Platform = platform(runner.PropertySandbox, runner.SandboxHermetic)
	res, out, stderr := sh(t, s, r, script)
	if strings.Contains(out, strings.TrimSpace(string(host))) || strings.Contains(out, "s3cr3t") {
		t.Fatalf("hermetic mode read host files: %q", out)
	}
	if want := ".\n..\nbin\ndev\nlib\nlib64\nproc\ntmp\nusr\n"; out != want {
		t.Fatalf("/ holds %q, want %q (stderr %q, exit %d)", out, want, stderr, res.ExitCode)
	}
	for _, p := range []string{"/etc/hostname", secret, os.Args[0]} {
		if !strings.Contains(stderr, p+": No such file or directory") {
			t.Errorf("stderr %q does not say that %s is missing", stderr, p)
		}
	}
	// The mount points are gone again, and nothing else was added.
	for _, name := range []string{"dev", "proc", "tmp"} {
		if _, err := os.Lstat(filepath.Join(req.BuildDir, name)); !os.IsNotExist(err) {
			t.Errorf("%s left in the input root: %v", name, err)
		}
	}
}

func TestHermeticMountPointsMustBeDirectories(t *testing.T) {
	s := newSandbox(t, sandboxConfig())
	req := setup(t, "/bin/true")
	req.Platform = platform(runner.PropertySandbox, runner.SandboxHermetic)
	os.WriteFile(filepath.Join(req.BuildDir, "tmp"), nil, 0o644)
	_, err := s.Run(context.Background(), req)
	requireCode(t, err, codes.InvalidArgument, "hermetic sandbox: the input root has a non-directory at /tmp, where the sandbox mounts its own")
}

func TestHostModeHidesTheWorkersFiles(t *testing.T) {
	// The worker's directory holds this action's build directory, another
	// action's, and a file of the worker's, all readable by anyone.
	// Outside /tmp, which the sandbox replaces: where a worker's
	// directory usually is.
	work, err := os.MkdirTemp("/var/tmp", "kiln-sandbox-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(work)
	os.Chmod(work, 0o755)
	mine := filepath.Join(work, "build", "1", "root")
	other := filepath.Join(work, "build", "2", "root")
	for _, d := range []string{mine, other} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile(filepath.Join(other, "other.o"), []byte("other's output"), 0o644)
	os.WriteFile(filepath.Join(work, "cache-file"), []byte("cached"), 0o644)
	req := runner.Request{
		Dir: mine, BuildDir: mine, Env: []string{"PATH=/usr/bin:/bin"},
		StdoutPath: filepath.Join(work, "build", "1", "stdout"), StderrPath: filepath.Join(work, "build", "1", "stderr"),
	}
	script := fmt.Sprintf(`cat %s/other.o %s/cache-file; echo mine > out; cat out`, other, work)

	cfg := sandboxConfig()
	t.Run("Control", func(t *testing.T) {
		_, out, _ := sh(t, newSandbox(t, cfg), req, script)
		if !strings.Contains(out, "other's output") {
			t.Fatalf("without HidePaths the files are readable, yet stdout is %q", out)
		}
	})
	cfg.HidePaths = []string{work}
	res, out, stderr := sh(t, newSandbox(t, cfg), req, script)
	if res.ExitCode != 0 || out != "mine\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", res.ExitCode, out, stderr)
	}
	if !strings.Contains(stderr, "other.o: No such file or directory") || !strings.Contains(stderr, "cache-file: No such file or directory") {
		t.Fatalf("stderr %q", stderr)
	}
}

func TestSandboxHasNoNetwork(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted sync.WaitGroup
	var conns int
	var mu sync.Mutex
	accepted.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns++
			mu.Unlock()
			c.Close()
		}
	})
	port := ln.Addr().(*net.TCPAddr).Port
	connect := fmt.Sprintf(`exec 3<>/dev/tcp/127.0.0.1/%d && echo connected`, port)
	s := newSandbox(t, sandboxConfig())
	both(t, func(t *testing.T, mode string, req runner.Request) {
		res, out, stderr := sh(t, s, req, connect)
		// Refused, not unreachable: loopback is up, but it is the
		// sandbox's own.
		if res.ExitCode == 0 || out != "" || !strings.Contains(stderr, "Connection refused") {
			t.Fatalf("exit %d, stdout %q, stderr %q", res.ExitCode, out, stderr)
		}
	})
	mu.Lock()
	if conns != 0 {
		t.Fatalf("the listener accepted %d connections", conns)
	}
	mu.Unlock()

	t.Run("NetworkOnWhereAllowed", func(t *testing.T) {
		// The control: with network=on the same connection works.
		cfg := sandboxConfig()
		cfg.AllowNetwork = true
		req := setup(t)
		req.Platform = platform("network", "on")
		res, out, stderr := sh(t, newSandbox(t, cfg), req, connect)
		if res.ExitCode != 0 || out != "connected\n" {
			t.Fatalf("exit %d, stdout %q, stderr %q", res.ExitCode, out, stderr)
		}
	})
	ln.Close()
	accepted.Wait()
}

func TestSandboxCannotWriteOutsideItsBuildDirectory(t *testing.T) {
	// A directory anyone may write to, outside the build directory and
	// outside /tmp (which the sandbox replaces).
	open, err := os.MkdirTemp("/var/tmp", "kiln-sandbox-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(open)
	os.Chmod(open, 0o777)
	hostTmp := filepath.Join("/tmp", fmt.Sprintf("kiln-sandbox-test-%d", os.Getpid()))
	s := newSandbox(t, sandboxConfig())
	both(t, func(t *testing.T, mode string, req runner.Request) {
		script := fmt.Sprintf(`touch %[1]s/escaped; touch /etc/kiln-escaped; touch /escaped; touch %[2]s && echo private tmp; touch out && echo build dir`, open, hostTmp)
		res, out, stderr := sh(t, s, req, script)
		if res.ExitCode != 0 || out != "private tmp\nbuild dir\n" {
			t.Fatalf("exit %d, stdout %q, stderr %q", res.ExitCode, out, stderr)
		}
		for _, p := range []string{filepath.Join(open, "escaped"), "/etc/kiln-escaped", "/escaped", hostTmp} {
			if _, err := os.Lstat(p); err == nil {
				os.Remove(p)
				t.Errorf("the action created %s on the host", p)
			}
		}
		if _, err := os.Stat(filepath.Join(req.BuildDir, "out")); err != nil {
			t.Errorf("the action's output is missing: %v", err)
		}
	})
}

// hostProcesses returns the pids of the host's processes whose command
// line contains marker.
func hostProcesses(marker string) []int {
	var pids []int
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if bytes.Contains(cmdline, []byte(marker)) && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestSandboxSeesOnlyItsOwnProcesses(t *testing.T) {
	s := newSandbox(t, sandboxConfig())
	// Another action, running meanwhile.
	other := setup(t, "/bin/sleep", "31.4159")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { s.Run(ctx, other) })
	defer wg.Wait()
	defer cancel()
	for deadline := time.Now().Add(5 * time.Second); len(hostProcesses("31.4159")) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the other action did not start")
		}
	}
	both(t, func(t *testing.T, mode string, req runner.Request) {
		res, out, stderr := sh(t, s, req, `sleep 27.18 & ps -e -o pid=,args=; true`)
		if res.ExitCode != 0 {
			t.Fatalf("exit %d, stderr %q", res.ExitCode, stderr)
		}
		// The init, the shell, its sleep and ps: nothing else.
		var args []string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(line)
			args = append(args, strings.Join(f[1:], " "))
		}
		if len(args) != 4 || !strings.HasPrefix(args[0], "kiln-sandbox-init") || args[2] != "sleep 27.18" {
			t.Fatalf("ps shows %q", out)
		}
	})
}

func TestSandboxTimeoutKillsTheWholeTree(t *testing.T) {
	s := newSandbox(t, sandboxConfig())
	both(t, func(t *testing.T, mode string, req runner.Request) {
		// Grandchildren that ignore SIGTERM, one in a session of its own
		// (out of reach of a process-group kill), and a shell that
		// ignores SIGTERM too.
		marker := fmt.Sprintf("271.%d", time.Now().UnixNano()%100000)
		req.Timeout = 500 * time.Millisecond
		start := time.Now()
		res, out, _ := sh(t, s, req, fmt.Sprintf(`trap "" TERM; echo started; (trap "" TERM; sleep %[1]s) & setsid sleep %[1]s & sleep %[1]s`, marker))
		if !res.TimedOut || res.ExitCode != 137 || out != "started\n" {
			t.Fatalf("timed out %v, exit %d, stdout %q", res.TimedOut, res.ExitCode, out)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("run took %v", d)
		}
		// Run returns once the tree is gone: no waiting here.
		if pids := hostProcesses(marker); len(pids) > 0 {
			for _, p := range pids {
				syscall.Kill(p, syscall.SIGKILL)
			}
			t.Fatalf("processes %v survived the timeout", pids)
		}
	})
}

func TestSandboxLeftoverProcessesDieWithTheAction(t *testing.T) {
	s := newSandbox(t, sandboxConfig())
	both(t, func(t *testing.T, mode string, req runner.Request) {
		marker := fmt.Sprintf("314.%d", time.Now().UnixNano()%100000)
		res, _, _ := sh(t, s, req, fmt.Sprintf(`setsid sleep %s & exit 0`, marker))
		if res.ExitCode != 0 {
			t.Fatalf("exit %d", res.ExitCode)
		}
		if pids := hostProcesses(marker); len(pids) > 0 {
			for _, p := range pids {
				syscall.Kill(p, syscall.SIGKILL)
			}
			t.Fatalf("processes %v outlived their action", pids)
		}
	})
}

func TestSandboxCancellationKills(t *testing.T) {
	s := newSandbox(t, sandboxConfig())
	req := setup(t, "/bin/sh", "-c", `echo partial; sleep 100`)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	res, err := s.Run(ctx, req)
	requireCode(t, err, codes.Canceled, "")
	stdout, _ := os.ReadFile(req.StdoutPath)
	if res.TimedOut || string(stdout) != "partial\n" || res.Signal != "SIGKILL" {
		t.Fatalf("timed out %v, signal %q, stdout %q", res.TimedOut, res.Signal, stdout)
	}
}

// helperRequest returns a request that runs this test binary as the
// helper named, from a copy in the build directory (the binary's own
// directory may be under /tmp, which the sandbox replaces).
func helperRequest(t *testing.T, helper string) runner.Request {
	t.Helper()
	req := setup(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := runnertest.LinkOrCopy(exe, filepath.Join(req.BuildDir, "helper"), fi.Mode()); err != nil {
		t.Fatal(err)
	}
	req.Args = []string{"./helper"}
	req.Env = []string{helperEnv + "=" + helper}
	return req
}

func TestSandboxForkBombIsContained(t *testing.T) {
	cfg := sandboxConfig()
	cfg.Limits.Processes = 30
	limited := newSandbox(t, cfg)
	t.Run("Counted", func(t *testing.T) {
		// The helper starts children until fork fails: at most the
		// limit, less the helper itself.
		req := helperRequest(t, "spawn")
		res, err := limited.Run(context.Background(), req)
		out, _ := os.ReadFile(req.StdoutPath)
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("exit %d, %v", res.ExitCode, err)
		}
		n, _ := strconv.Atoi(strings.Fields(string(out))[0])
		if n >= 30 || n < 10 || !strings.Contains(string(out), "resource temporarily unavailable") {
			t.Fatalf("the helper started %q children with a limit of 30 processes", out)
		}
	})
	t.Run("CountedPerAction", func(t *testing.T) {
		// Two actions at once each get the whole limit.
		var wg sync.WaitGroup
		outs := make([]string, 2)
		for i := range outs {
			wg.Go(func() {
				req := helperRequest(t, "spawn")
				limited.Run(context.Background(), req)
				out, _ := os.ReadFile(req.StdoutPath)
				outs[i] = string(out)
			})
		}
		wg.Wait()
		for _, out := range outs {
			if n, _ := strconv.Atoi(strings.Fields(out + " x")[0]); n < 20 {
				t.Fatalf("outputs %q: an action was starved by the other", outs)
			}
		}
	})
	t.Run("Unlimited", func(t *testing.T) {
		// The control: without the limit the helper starts all 1000.
		req := helperRequest(t, "spawn")
		newSandbox(t, sandboxConfig()).Run(context.Background(), req)
		if out, _ := os.ReadFile(req.StdoutPath); string(out) != "1000\n" {
			t.Fatalf("stdout %q", out)
		}
	})
	t.Run("Bomb", func(t *testing.T) {
		// A real fork bomb ends with its timeout, leaving nothing behind.
		req := setup(t)
		req.Timeout = time.Second
		marker := fmt.Sprintf("bomb%d", time.Now().UnixNano()%100000)
		res, _, _ := sh(t, limited, req, fmt.Sprintf(`%[1]s(){ %[1]s|%[1]s& }; %[1]s; sleep 10`, marker))
		if !res.TimedOut {
			t.Fatalf("exit %d before the timeout", res.ExitCode)
		}
		if pids := hostProcesses("sleep 10"); len(pids) > 0 {
			t.Fatalf("processes %v outlived the bomb", pids)
		}
	})
}

func TestSandboxLimits(t *testing.T) {
	cfg := sandboxConfig()
	cfg.Limits = runner.Limits{OpenFiles: 100, FileSizeBytes: 1 << 20, MemoryBytes: 128 << 20}
	s := newSandbox(t, cfg)
	both(t, func(t *testing.T, mode string, req runner.Request) {
		res, out, _ := sh(t, s, req, `ulimit -n; ulimit -f; ulimit -d`)
		if want := "100\n1024\n131072\n"; res.ExitCode != 0 || out != want {
			t.Fatalf("exit %d, limits %q, want %q", res.ExitCode, out, want)
		}
		// Writing past the file size limit is SIGXFSZ (the shell's
		// exit status says so whether it forked head or became it).
		res, _, _ = sh(t, s, req, `head -c 2000000 /dev/zero > big`)
		if res.ExitCode != 128+int(syscall.SIGXFSZ) {
			t.Fatalf("exit %d, signal %q", res.ExitCode, res.Signal)
		}
		if fi, err := os.Stat(filepath.Join(req.BuildDir, "big")); err != nil || fi.Size() != 1<<20 {
			t.Fatalf("big: %v, %v", fi, err)
		}
		// 200 MB in one bash variable cannot fit in 128 MiB of data.
		res, _, _ = sh(t, s, req, `x=$(head -c 200000000 /dev/zero | tr '\0' a); echo ${#x}`)
		if res.ExitCode == 0 {
			t.Fatal("allocated 200 MB with a memory limit of 128 MiB")
		}
	})
}

func TestSandboxConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  runner.SandboxConfig
		msg  string
	}{
		{"NegativeID", runner.SandboxConfig{UID: -1}, "sandbox: uid -1, gid 0: want ids of 0 or more"},
		{"NegativeLimit", runner.SandboxConfig{Limits: runner.Limits{Processes: -1}}, "sandbox: negative limit"},
		{"FewOpenFiles", runner.SandboxConfig{Limits: runner.Limits{OpenFiles: 10}}, "sandbox: open files limit 10: want at least 64"},
		{"LittleMemory", runner.SandboxConfig{Limits: runner.Limits{MemoryBytes: 1 << 20}}, "sandbox: memory limit 1048576 bytes: want at least 64 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := runner.NewSandbox(tc.cfg); err == nil || err.Error() != tc.msg {
				t.Fatalf("got %v, want %q", err, tc.msg)
			}
		})
	}
	t.Run("AboveTheHardLimit", func(t *testing.T) {
		// The init cannot raise a hard limit: checked at start, not
		// at the first action.
		var lim syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Max > 1<<40 {
			t.Skip("no hard limit on open files")
		}
		cfg := sandboxConfig()
		cfg.Limits.OpenFiles = int64(lim.Max) + 1
		msg := fmt.Sprintf("sandbox: open files limit %d is above the worker's own hard limit, %d", lim.Max+1, lim.Max)
		if _, err := runner.NewSandbox(cfg); err == nil || err.Error() != msg {
			t.Fatalf("got %v, want %q", err, msg)
		}
	})
}

func TestSandboxProperties(t *testing.T) {
	cfg := sandboxConfig()
	var got []string
	for _, p := range newSandbox(t, cfg).Properties() {
		got = append(got, p.GetName()+"="+p.GetValue())
	}
	if want := "network=off sandbox=hermetic sandbox=host"; strings.Join(got, " ") != want {
		t.Fatalf("properties %q, want %q", got, want)
	}
	cfg.AllowNetwork = true
	got = got[:0]
	for _, p := range newSandbox(t, cfg).Properties() {
		got = append(got, p.GetName()+"="+p.GetValue())
	}
	if want := "network=off network=on sandbox=hermetic sandbox=host"; strings.Join(got, " ") != want {
		t.Fatalf("properties %q, want %q", got, want)
	}
}
