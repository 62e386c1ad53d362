// Package client is the kiln cc compiler wrapper: it decides with
// wrapper/cmdline whether a compile runs remotely, and if so preprocesses
// locally, sends the compile of the preprocessed file with the captured
// toolchain (wrapper/toolchain) to a REAPI server as a hermetic action,
// and writes its outputs as the local compile would. Anything that goes
// wrong on the remote side falls back to a local compile (unless
// force_remote), and every outcome is counted in wrapper/stats.
//
//	Parse ── local ──────────────────────────────> exec gcc (no network)
//	  │ remote
//	  v
//	gcc -E (writes .d) ─ fails ─> exec gcc (its own error message)
//	  │
//	  v
//	toolchain tree + .i ─> Action ─> GetActionResult ─ hit ─> download, verify
//	                                   │ miss
//	                                   v
//	                     UploadMissing, Execute, (WaitExecution) ─> download
//	any failure ──> warn once per 10 min, count, compile locally
package client

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/kiln-build/kiln/wrapper/config"
	"github.com/kiln-build/kiln/wrapper/decide"
	"github.com/kiln-build/kiln/wrapper/stats"
)

// WarnTTL is how long one fallback warning silences the next ones, across
// all wrapper processes of the user.
const WarnTTL = 10 * time.Minute

// ReasonPreprocessFailed: gcc -E failed (a missing header, a syntax error
// in a directive); the real compile reports it. The other local reasons
// are cmdline's and decide's.
const ReasonPreprocessFailed = "preprocess_failed"

// Wrapper runs one compile. Fields are set by the caller.
type Wrapper struct {
	// Config is the effective configuration.
	Config config.Config
	// Stats receives this invocation's counters.
	Stats *stats.Store
	// CacheDir holds the toolchain cache.
	CacheDir string
	// Self is the resolved path of the kiln executable: PATH entries that
	// are links to it are skipped when looking for the compiler.
	Self string
	// Getenv reads the environment (PATH).
	Getenv func(string) string
	// Stdout and Stderr receive the compiler's output.
	Stdout, Stderr io.Writer
	// Exec, if set, replaces the process with the local compiler and
	// returns only on failure (syscall.Exec). Nil runs it as a child.
	Exec func(path string, argv []string, env []string) error
	// Now is the clock.
	Now func() time.Time

	// Dir is the compile's working directory, "" for this process's; Env
	// is the compiler's environment, nil for this process's; Umask is the
	// client's umask (outputs are created with it), nil for this
	// process's. A daemon serving many clients sets all three.
	Dir   string
	Env   []string
	Umask *os.FileMode
	// DeferLocal makes every local compile (a local decision, a
	// fallback) the caller's job: Run counts it and returns at once, and
	// Deferred reports it. The daemon's clients run the compiler
	// themselves.
	DeferLocal bool
	// Dial returns a connection to the server and the function that
	// releases it; nil dials one per compile.
	Dial func(addr string) (*grpc.ClientConn, func(), error)
	// Hashes remembers the files direct mode hashed, across the compiles
	// of a daemon; nil hashes every file each time.
	Hashes *FileHashes

	delta    stats.Stats
	start    time.Time
	deferred bool
}

// Deferred reports whether Run left a local compile to the caller
// (DeferLocal).
func (w *Wrapper) Deferred() bool { return w.deferred }

// child is how compilers run for this compile.
func (w *Wrapper) child() decide.Child { return decide.Child{Dir: w.Dir, Env: w.Env} }

// path returns p (relative to the compile's working directory) as this
// process can open it.
func (w *Wrapper) path(p string) string { return decide.In(w.Dir, p) }

// Run compiles with the compiler named name (a name looked up in PATH or
// a path) and args, and returns the exit code to exit with.
func (w *Wrapper) Run(ctx context.Context, name string, args []string) int {
	w.start = w.Now()
	w.delta = stats.Stats{Requests: 1}
	r, err := decide.Decide(name, args, decide.Options{PATH: w.Getenv("PATH"), Self: w.Self, BaseDir: w.Config.BaseDir, Dir: w.Dir})
	if err != nil {
		fmt.Fprintf(w.Stderr, "kiln: %v\n", err)
		w.record()
		return 127
	}
	if r.Local != "" {
		return w.local(r.Path, name, args, r.Local)
	}
	return w.remote(ctx, r.Path, name, args, r.Invocation)
}

// record adds this invocation's counters to the store. A stats failure
// never fails a compile.
func (w *Wrapper) record() {
	w.delta.WrapperNanos = int64(w.Now().Sub(w.start))
	if err := w.Stats.Record(w.delta); err != nil {
		w.logf("%v", err)
	}
}

// logf appends a line to the configured log file, if any.
func (w *Wrapper) logf(format string, args ...any) {
	w.Config.Logf(w.Now(), format, args...)
}

// local counts a local compile for reason and runs it.
func (w *Wrapper) local(path, name string, args []string, reason string) int {
	stats.Inc(&w.delta.LocalCompiles, reason)
	w.record()
	return w.runLocal(path, name, args)
}

// runLocal runs the real compiler with the original arguments, replacing
// the process when w.Exec is set.
func (w *Wrapper) runLocal(path, name string, args []string) int {
	if w.DeferLocal {
		w.deferred = true
		return 0
	}
	argv := decide.Argv(path, args)
	if w.Exec != nil {
		err := w.Exec(path, argv, os.Environ())
		fmt.Fprintf(w.Stderr, "kiln: exec %s: %v\n", path, err)
		return 127
	}
	code, err := w.child().Run(path, argv, nil, w.Stdout, w.Stderr)
	if err != nil {
		fmt.Fprintf(w.Stderr, "kiln: %v\n", err)
		return 127
	}
	return code
}

// fallback handles a remote failure err of the kind reason: a local
// compile with one warning per WarnTTL, or an error when falling back is
// not allowed.
func (w *Wrapper) fallback(path, name string, args []string, reason string, err error) int {
	w.logf("remote compile of %s failed (%s): %v", strings.Join(args, " "), reason, err)
	if w.Config.ForceRemote || !w.Config.Fallback {
		w.delta.Errors++
		w.record()
		why := "force_remote is set"
		if !w.Config.ForceRemote {
			why = "fallback is off"
		}
		fmt.Fprintf(w.Stderr, "kiln: remote compile failed and %s: %v\n", why, err)
		return 1
	}
	stats.Inc(&w.delta.Fallbacks, reason)
	if w.Stats.WarnOnce("fallback", w.Now(), WarnTTL) {
		fmt.Fprintf(w.Stderr, "kiln: warning: compiling locally: %s: %v (further warnings silenced for %v; see kiln stats)\n", reason, firstLine(err), WarnTTL)
	}
	w.record()
	return w.runLocal(path, name, args)
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
