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
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/kiln-build/kiln/wrapper/cmdline"
	"github.com/kiln-build/kiln/wrapper/config"
	"github.com/kiln-build/kiln/wrapper/stats"
)

// WarnTTL is how long one fallback warning silences the next ones, across
// all wrapper processes of the user.
const WarnTTL = 10 * time.Minute

// Local reasons the wrapper adds to cmdline's.
const (
	// ReasonParseError: the command line could not be read (a response
	// file is unreadable); the compiler reports it.
	ReasonParseError = "parse_error"
	// ReasonOutputDirMissing: the object's directory does not exist; the
	// local compiler gives its own error.
	ReasonOutputDirMissing = "output_dir_missing"
	// ReasonPreprocessFailed: gcc -E failed (a missing header, a syntax
	// error in a directive); the real compile reports it.
	ReasonPreprocessFailed = "preprocess_failed"
	// ReasonOutputPath: the output cannot be named inside the remote
	// working directory (split DWARF with an absolute or ../ output).
	ReasonOutputPath = "output_path"
)

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

	delta stats.Stats
	start time.Time
}

// Run compiles with the compiler named name (a name looked up in PATH or
// a path) and args, and returns the exit code to exit with.
func (w *Wrapper) Run(ctx context.Context, name string, args []string) int {
	w.start = w.Now()
	w.delta = stats.Stats{Requests: 1}
	path, err := ResolveCompiler(name, w.Getenv("PATH"), w.Self)
	if err != nil {
		fmt.Fprintf(w.Stderr, "kiln: %v\n", err)
		w.record()
		return 127
	}
	inv, err := cmdline.Parse(name, args, nil)
	switch {
	case err != nil:
		return w.local(path, name, args, ReasonParseError)
	case !inv.Decision.Remote:
		return w.local(path, name, args, inv.Decision.Reason.String())
	}
	if dir := filepath.Dir(inv.Output); !isDir(dir) {
		return w.local(path, name, args, ReasonOutputDirMissing)
	}
	if inv.DwoFile != "" && (!filepath.IsLocal(inv.Output) || !filepath.IsLocal(inv.DwoFile)) && w.Config.BaseDir == "" {
		return w.local(path, name, args, ReasonOutputPath)
	}
	return w.remote(ctx, path, name, args, inv)
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
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
	if w.Config.Log == "" {
		return
	}
	f, err := os.OpenFile(w.Config.Log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	fmt.Fprintf(f, "%s kiln cc[%d]: %s\n", w.Now().Format(time.RFC3339Nano), os.Getpid(), fmt.Sprintf(format, args...))
	f.Close()
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
	argv := append([]string{compilerArg0(path)}, args...)
	if w.Exec != nil {
		err := w.Exec(path, argv, os.Environ())
		fmt.Fprintf(w.Stderr, "kiln: exec %s: %v\n", path, err)
		return 127
	}
	code, err := runChild(path, argv, nil, w.Stdout, w.Stderr)
	if err != nil {
		fmt.Fprintf(w.Stderr, "kiln: %v\n", err)
		return 127
	}
	return code
}

// compilerArg0 is argv[0] for running the compiler at path: path itself,
// never the bare name it was called by. gcc finds cc1 and its other
// programs relative to argv[0], looking a bare name up in PATH, where a
// kiln install-bins link comes first: from the link gcc would look next to
// the kiln binary and fail with "cannot execute 'cc1'". Messages are the
// same, since gcc names itself by argv[0]'s base name. (ccache does the
// same.)
func compilerArg0(path string) string { return path }

// runChild runs path with argv (argv[0] is the name the program sees)
// and returns its exit code; an error means it could not run. A child
// killed by a signal gives 128+signal, as shells report it.
func runChild(path string, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	cmd := exec.Command(path)
	cmd.Args = argv
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if code := ee.ExitCode(); code >= 0 {
			return code, nil
		}
		return 128 + 9, nil
	}
	if err != nil {
		return 0, fmt.Errorf("run %s: %w", path, err)
	}
	return 0, nil
}

// ResolveCompiler finds the compiler to run for name: name itself when it
// contains a slash, else the first executable called name in pathEnv that
// is not self (a link made by kiln install-bins). The result is absolute.
func ResolveCompiler(name, pathEnv, self string) (string, error) {
	if strings.ContainsRune(name, '/') {
		return filepath.Abs(name)
	}
	selfReal := ""
	if self != "" {
		selfReal, _ = filepath.EvalSymlinks(self)
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue // relative PATH entries are a security hole; gcc's own lookup is what a build wants
		}
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			continue
		}
		if selfReal != "" {
			if real, err := filepath.EvalSymlinks(p); err == nil && real == selfReal {
				continue
			}
		}
		return p, nil
	}
	return "", fmt.Errorf("compiler %s not found in PATH", name)
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
