// Command kiln is the command users run. It is small on purpose: a
// compiler call (`kiln cc gcc ...`, or gcc through a `kiln install-bins`
// link) is decided here, and a local one (a link, a configure test, -E)
// becomes the compiler by exec without loading gRPC, so that it costs
// about as much as starting any small program. Remote compiles and every
// other command (server, worker, bench, config, stats, install-bins) are
// handed by exec to kiln-core, the full binary, found next to this one or
// in PATH.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kiln-build/kiln/wrapper/cmdline"
	"github.com/kiln-build/kiln/wrapper/config"
	"github.com/kiln-build/kiln/wrapper/decide"
	"github.com/kiln-build/kiln/wrapper/stats"
)

// coreName is the full binary's file name.
const coreName = "kiln-core"

func main() {
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
			name = r.Path
		}
		return execCore(append([]string{"cc", name}, args...))
	}
	delta := stats.Stats{Requests: 1}
	stats.Inc(&delta.LocalCompiles, r.Local)
	delta.WrapperNanos = int64(time.Since(start))
	if err := stats.Open(config.CacheDir()).Record(delta); err != nil && cfg.Log != "" {
		logLine(cfg.Log, err)
	}
	err = syscall.Exec(r.Path, decide.Argv(r.Path, args), os.Environ())
	fmt.Fprintf(os.Stderr, "kiln: exec %s: %v\n", r.Path, err)
	return 127
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
	self, err := os.Executable()
	if err == nil {
		if real, err := filepath.EvalSymlinks(self); err == nil {
			self = real
		}
		p := filepath.Join(filepath.Dir(self), coreName)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	if p, err := exec.LookPath(coreName); err == nil {
		return p, nil
	}
	return "", errors.New(coreName + " is not next to kiln nor in PATH: install both binaries (go build -o bin/ ./cmd/...)")
}

func logLine(file string, err error) {
	f, ferr := os.OpenFile(file, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if ferr != nil {
		return
	}
	fmt.Fprintf(f, "%s kiln cc[%d]: %v\n", time.Now().Format(time.RFC3339Nano), os.Getpid(), err)
	f.Close()
}
