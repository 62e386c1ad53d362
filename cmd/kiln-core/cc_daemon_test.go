package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// daemonPID returns the pid of the kiln cc daemon serving sock, 0 if none.
func daemonPID(sock string) int {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(data, []byte("cc-daemon\x00--socket\x00"+sock+"\x00")) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		return pid
	}
	return 0
}

// remoteFixture is a server, the test project, one compile of it and
// gcc's outputs for that compile.
type remoteFixture struct {
	env              *ccEnv
	dir, obj, dep    string
	args             []string
	wantObj, wantDep []byte
}

func newRemoteFixture(t *testing.T) *remoteFixture {
	needGCC(t)
	f := &remoteFixture{dir: project(t), obj: filepath.Join("obj", "a.o"), dep: filepath.Join("obj", "a.d")}
	addr := startKilnServer(t)
	f.args = compileArgs(f.dir, "a", f.obj, "-O2")
	f.wantObj, f.wantDep = compileLocally(t, f.dir, f.obj, f.dep, f.args...)
	f.env = newCCEnv(t, addr, "KILN_FORCE_REMOTE=1")
	return f
}

// waitGone waits until the killed daemon of sock has released its files:
// its lock file can be taken. Its command line and its main thread's state
// change earlier, while other threads still hold the listening socket (a
// client may then connect to a dying daemon) and the lock (a new daemon
// would fail to take it).
func waitGone(t *testing.T, sock string) {
	t.Helper()
	f, err := os.OpenFile(sock+".lock", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
			return
		}
	}
	t.Fatal("the killed daemon still holds its lock")
}

// waitDaemon returns the pid of the daemon serving sock, waiting for it
// to appear (a loaded machine may have done the compile without a daemon
// slow to start), 0 if none does.
func waitDaemon(sock string) int {
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if pid := daemonPID(sock); pid != 0 || time.Now().After(deadline) {
			return pid
		}
	}
}

// TestCCDaemon checks that remote compiles go through one daemon per user
// and that whatever happens to the daemon (off, killed, stopped), a compile
// still gives gcc's object.
func TestCCDaemon(t *testing.T) {
	f := newRemoteFixture(t)
	e, dir, obj, dep, args, wantObj, wantDep := f.env, f.dir, f.obj, f.dep, f.args, f.wantObj, f.wantDep
	kilnLog := filepath.Join(t.TempDir(), "kiln.log")
	e.env = append(e.env, "KILN_LOG="+kilnLog)
	compile := func(t *testing.T, e *ccEnv) time.Duration {
		t.Helper()
		os.Remove(filepath.Join(dir, obj))
		start := time.Now()
		if _, stderr, code := e.run(dir, append([]string{"cc", "gcc"}, args...)...); code != 0 || stderr != "" {
			t.Fatalf("kiln cc: exit %d, stderr %q", code, stderr)
		}
		took := time.Since(start)
		if gotObj, gotDep := readOutputs(t, dir, obj, dep); !bytes.Equal(gotObj, wantObj) || !bytes.Equal(gotDep, wantDep) {
			t.Fatalf("outputs differ from gcc's")
		}
		return took
	}
	compile(t, e)
	socks, _ := filepath.Glob(filepath.Join(e.cache, "kiln", "cc", "daemon-*.sock"))
	if len(socks) != 1 {
		t.Fatalf("daemon sockets %v, want one", socks)
	}
	sock := socks[0]
	pid := daemonPID(sock)
	if pid == 0 {
		t.Fatal("no daemon process serves", sock)
	}
	for i := 0; i < 3; i++ {
		compile(t, e)
	}
	if p := daemonPID(sock); p != pid {
		t.Fatalf("daemon pid %d, then %d: want the same daemon for every compile", pid, p)
	}
	if s := e.stats(); s.CacheHits != 3 || s.CacheMisses != 1 {
		t.Fatalf("stats %+v", s)
	}

	t.Run("Off", func(t *testing.T) {
		off := &ccEnv{t: t, cache: e.cache, env: append(append([]string(nil), e.env...), "KILN_DAEMON=0")}
		compile(t, off)
	})
	t.Run("Killed", func(t *testing.T) {
		// SIGKILL leaves the socket file: the next compile starts a new daemon.
		if pid <= 0 {
			t.Fatal("no daemon to kill")
		}
		syscall.Kill(pid, syscall.SIGKILL)
		waitGone(t, sock)
		if _, err := os.Stat(sock); err != nil {
			t.Fatalf("socket: %v", err)
		}
		compile(t, e)
		if pid = waitDaemon(sock); pid == 0 {
			klog, _ := os.ReadFile(kilnLog)
			t.Fatalf("no new daemon; kiln log:\n%s", klog)
		}
	})
	t.Run("NoInheritedDescriptors", func(t *testing.T) {
		// A tool that waits for EOF on a pipe it gave the build must not
		// wait for the daemon the build started.
		if pid <= 0 {
			t.Fatal("no daemon to kill")
		}
		syscall.Kill(pid, syscall.SIGKILL)
		waitGone(t, sock)
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		os.Remove(filepath.Join(dir, obj))
		cmd := exec.Command(kiln(t), append([]string{"cc", "gcc"}, args...)...)
		cmd.Dir, cmd.Env, cmd.ExtraFiles = dir, e.env, []*os.File{w}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("kiln cc: %v %s", err, out)
		}
		w.Close()
		if pid = waitDaemon(sock); pid == 0 {
			log, _ := os.ReadFile(filepath.Join(e.cache, "kiln", "cc", "daemon.log"))
			procs, _ := exec.Command("sh", "-c", "ps -eo pid,stat,args | grep -v grep | grep -e cc-daemon -e kiln").CombinedOutput()
			socks, _ := filepath.Glob(filepath.Join(e.cache, "kiln", "cc", "daemon-*"))
			klog, _ := os.ReadFile(kilnLog)
			t.Fatalf("no new daemon; daemon.log:\n%s\nkiln log:\n%s\nprocesses:\n%s\nfiles: %v\nstats %+v", log, klog, procs, socks, e.stats())
		}
		r.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := r.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("read %d, %v: the daemon holds the pipe the build inherited", n, err)
		}
	})
	t.Run("Stopped", func(t *testing.T) {
		// A daemon that accepts and never answers: after the accept
		// timeout the compile is done without it.
		if pid <= 0 {
			t.Fatal("no daemon to stop") // kill(0) would stop this test
		}
		syscall.Kill(pid, syscall.SIGSTOP)
		defer syscall.Kill(pid, syscall.SIGCONT)
		stuck := &ccEnv{t: t, cache: e.cache, env: append(append([]string(nil), e.env...), "KILN_EXECUTE_TIMEOUT=1s")}
		if took := compile(t, stuck); took < time.Second {
			t.Fatalf("compile took %v: it did not wait for the daemon", took)
		}
	})
	if s := e.stats(); s.Errors != 0 || len(s.Fallbacks) != 0 {
		t.Fatalf("stats %+v", s)
	}
}
