// Command kiln is the command users run. It is small on purpose: a
// compiler call (`kiln cc gcc ...`, or gcc through a `kiln install-bins`
// link) is decided here, and a local one (a link, a configure test, -E)
// becomes the compiler by exec without loading gRPC, so that it costs
// about as much as starting any small program. Remote compiles and every
// other command (server, worker, bench, config, stats, install-bins) are
// handed to kiln-core, the full binary, found next to this one or in PATH:
// remote compiles to the user's kiln cc daemon (a kiln-core started on
// first use, see wrapper/ccd), the rest by exec. It is also the init of
// kiln-core's sandboxed actions, for the same reason: it starts fast.
//
// Before any of this, before the Go runtime even starts, the C fast path
// (wrapper/fastpath) takes the calls it can decide from the command line's
// shape alone (queries, -E, links, configure probes): a configure script's
// calls cost little more than the compiler's own start-up.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kiln-build/kiln/internal/sibling"
	"github.com/kiln-build/kiln/worker/runner/sandboxinit" // its C init runs before main
	"github.com/kiln-build/kiln/wrapper/ccd"
	"github.com/kiln-build/kiln/wrapper/cmdline"
	"github.com/kiln-build/kiln/wrapper/config"
	"github.com/kiln-build/kiln/wrapper/decide"
	_ "github.com/kiln-build/kiln/wrapper/fastpath" // its C constructor runs first
	"github.com/kiln-build/kiln/wrapper/stats"
)

// coreName is the full binary's file name.
const coreName = "kiln-core"

func main() {
	// A sandboxed action's init is this binary (see
	// worker/runner/sandboxinit), whose C part never lets it get here.
	sandboxinit.MaybeRun()
	args := os.Args[1:]
	if base := filepath.Base(os.Args[0]); base != "kiln" && cmdline.KindOf(base) != cmdline.KindUnknown {
		os.Exit(compile(base, args))
	}
	if len(args) >= 2 && args[0] == "cc" && !strings.HasPrefix(args[1], "-") {
		os.Exit(compile(args[1], args[2:]))
	}
	os.Exit(execCore(args))
}

// compile routes one compiler call: a local compile is counted and run by
// exec; everything else goes to kiln-core's cc.
func compile(name string, args []string) int {
	start := time.Now()
	cfg, err := config.Load(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kiln:", err)
		return 1
	}
	self, _ := os.Executable()
	r, err := decide.Decide(name, args, decide.Options{PATH: os.Getenv("PATH"), Self: self, BaseDir: cfg.BaseDir})
	if err != nil || r.Local == "" {
		// A compiler that is not found is reported (and counted) by the
		// core, like every remote compile. The resolved path travels so
		// that the core does not look the name up again.
		if err == nil {
			if cfg.Daemon {
				if resp, ok := viaDaemon(cfg, r.Path, args); ok {
					os.Stdout.Write(resp.Stdout)
					os.Stderr.Write(resp.Stderr)
					if !resp.Local {
						return resp.Exit
					}
					return execCompiler(r.Path, args) // counted by the daemon
				}
			}
			name = r.Path
		}
		return execCore(append([]string{"cc", name}, args...))
	}
	delta := stats.Stats{Requests: 1}
	stats.Inc(&delta.LocalCompiles, r.Local)
	delta.WrapperNanos = int64(time.Since(start))
	if err := stats.Open(config.CacheDir()).Record(delta); err != nil {
		cfg.Logf(time.Now(), "%v", err)
	}
	return execCompiler(r.Path, args)
}

// execCompiler replaces this process with the compiler at path.
func execCompiler(path string, args []string) int {
	err := syscall.Exec(path, decide.Argv(path, args), os.Environ())
	fmt.Fprintf(os.Stderr, "kiln: exec %s: %v\n", path, err)
	return 127
}

// daemonStart bounds the wait for a daemon this call started.
const daemonStart = 3 * time.Second

// viaDaemon runs a remote compile through the user's kiln cc daemon,
// starting it when none listens. false means the daemon could not take the
// compile (no kiln-core, a daemon that does not start or answer, a
// configuration it refuses); kiln-core cc then does it, and reports.
func viaDaemon(cfg config.Config, compiler string, args []string) (*ccd.Response, bool) {
	core, err := findCore()
	if err != nil {
		return nil, false
	}
	cache := config.CacheDir()
	sock, err := ccd.SocketPath(cache, core)
	if err != nil {
		return nil, false
	}
	conn, err := ccd.Dial(sock)
	if errors.Is(err, ccd.ErrNoDaemon) {
		if err = startDaemon(core, cache, sock, cfg.DaemonIdle); err == nil {
			deadline := time.Now().Add(daemonStart)
			for {
				conn, err = ccd.Dial(sock)
				if !errors.Is(err, ccd.ErrNoDaemon) || time.Now().After(deadline) {
					break
				}
				time.Sleep(2 * time.Millisecond)
			}
		}
	}
	if err != nil {
		cfg.Logf(time.Now(), "kiln cc daemon: %v", err)
		return nil, false
	}
	cwd, err := os.Getwd()
	if err != nil {
		conn.Close()
		return nil, false
	}
	umask := syscall.Umask(0)
	syscall.Umask(umask)
	// The daemon bounds the compile by execute_timeout and says how long
	// to wait; past that, it is stuck.
	resp, err := ccd.Call(conn, &ccd.Request{Dir: cwd, Env: os.Environ(), Compiler: compiler, Args: args, Umask: uint32(umask)})
	if err == nil && resp.Error != "" {
		err = errors.New(resp.Error)
	}
	if err != nil {
		cfg.Logf(time.Now(), "kiln cc daemon: %v", err)
		return nil, false
	}
	return resp, true
}

// startDaemon starts `kiln-core cc-daemon` for sock in its own session,
// detached from the build (no inherited pipes: make must not wait for it),
// logging to daemon.log in the cache directory.
func startDaemon(core, cache, sock string, idle time.Duration) error {
	if err := os.MkdirAll(cache, 0o700); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(cache, "daemon.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(core, "cc-daemon", "--socket", sock, "--cache-dir", cache, "--idle", idle.String())
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// Descriptors this process inherited (make's jobserver pipe, a pipe
	// some tool waits on for EOF) must not live on in the daemon; the
	// compiler this process may exec next still gets them.
	restore := closeOnExec()
	err = cmd.Start()
	restore()
	if err != nil {
		return err
	}
	return cmd.Process.Release()
}

// closeOnExec sets FD_CLOEXEC on every inherited descriptor above 2 that
// lacks it, and returns the function that clears it again.
func closeOnExec() func() {
	ents, _ := os.ReadDir("/proc/self/fd")
	var set []int
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0)
		if errno != 0 || flags&syscall.FD_CLOEXEC != 0 {
			continue
		}
		syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_SETFD, flags|syscall.FD_CLOEXEC)
		set = append(set, fd)
	}
	return func() {
		for _, fd := range set {
			syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_SETFD, 0)
		}
	}
}

// execCore replaces this process with kiln-core running args. It returns
// only on failure.
func execCore(args []string) int {
	core, err := findCore()
	if err == nil {
		err = syscall.Exec(core, append([]string{core}, args...), os.Environ())
	}
	fmt.Fprintln(os.Stderr, "kiln:", err)
	return 1
}

// findCore returns kiln-core next to this executable (links resolved),
// else the one in PATH.
func findCore() (string, error) {
	if p, ok := sibling.Path(coreName); ok {
		return p, nil
	}
	if p, err := exec.LookPath(coreName); err == nil {
		return p, nil
	}
	return "", errors.New(coreName + " is not next to kiln nor in PATH: install both binaries (go build -o bin/ ./cmd/...)")
}
