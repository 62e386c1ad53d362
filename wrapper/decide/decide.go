// Package decide routes one compiler command: it finds the compiler to
// run and says whether the compile goes to the cluster or runs locally,
// and why. It is the whole of what the wrapper does for a local compile,
// so it must stay cheap and free of gRPC: cmd/kiln links it without the
// rest of kiln, to start in a few milliseconds for every configure test.
package decide

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/kiln-build/kiln/wrapper/cmdline"
)

// Local reasons decide adds to cmdline's; the remote path adds its own.
const (
	// ReasonParseError: the command line could not be read (a response
	// file is unreadable); the compiler reports it.
	ReasonParseError = "parse_error"
	// ReasonOutputDirMissing: the object's directory does not exist; the
	// local compiler gives its own error.
	ReasonOutputDirMissing = "output_dir_missing"
	// ReasonOutputPath: the output cannot be named inside the remote
	// working directory (split DWARF with an absolute or ../ output).
	ReasonOutputPath = "output_path"
)

// Route is where one compile runs.
type Route struct {
	// Path is the absolute path of the compiler to run.
	Path string
	// Invocation is the parsed command line; nil after a parse error.
	Invocation *cmdline.Invocation
	// Local is why the compile runs locally; "" means remotely.
	Local string
}

// Options are the inputs of Decide besides the command line.
type Options struct {
	// PATH is the search path for a compiler named without a slash.
	PATH string
	// Self is kiln's own executable: links to it in PATH are skipped.
	Self string
	// BaseDir is the client's base_dir ("" when unset): with it, outputs
	// outside the working directory can still be named remotely.
	BaseDir string
	// Dir is the compile's working directory; "" means this process's.
	Dir string
}

// In returns p as seen from dir: p itself when absolute or dir is "".
func In(dir, p string) string {
	if dir == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// Decide resolves the compiler called name and routes the command args.
// The error is a compiler that cannot be found.
func Decide(name string, args []string, o Options) (Route, error) {
	lookup := name
	if strings.ContainsRune(name, '/') {
		lookup = In(o.Dir, name)
	}
	path, err := ResolveCompiler(lookup, o.PATH, o.Self)
	if err != nil {
		return Route{}, err
	}
	r := Route{Path: path}
	inv, err := cmdline.ParseWithOptions(name, args, cmdline.Options{
		ReadFile: func(p string) ([]byte, error) { return os.ReadFile(In(o.Dir, p)) },
		Exists:   func(p string) bool { _, err := os.Stat(In(o.Dir, p)); return err == nil },
	})
	switch {
	case err != nil:
		r.Local = ReasonParseError
		return r, nil
	case !inv.Decision.Remote:
		r.Local = inv.Decision.Reason.String()
	case !isDir(In(o.Dir, filepath.Dir(inv.Output))):
		r.Local = ReasonOutputDirMissing
	case inv.DwoFile != "" && (!filepath.IsLocal(inv.Output) || !filepath.IsLocal(inv.DwoFile)) && o.BaseDir == "":
		r.Local = ReasonOutputPath
	}
	r.Invocation = inv
	return r, nil
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// Arg0 is argv[0] for running the compiler at path: path itself, never
// the bare name it was called by. gcc finds cc1 and its other programs
// relative to argv[0], looking a bare name up in PATH, where a kiln
// install-bins link comes first: from the link gcc would look next to the
// kiln binary and fail with "cannot execute 'cc1'". Messages are the
// same, since gcc names itself by argv[0]'s base name. (ccache does the
// same.)
func Arg0(path string) string { return path }

// Argv is the argument vector that runs the compiler at path with args.
func Argv(path string, args []string) []string {
	return append([]string{Arg0(path)}, args...)
}

// Child is where and how a compiler runs: its working directory ("" for
// this process's) and environment (nil for this process's).
type Child struct {
	Dir string
	Env []string
}

// Run runs path with argv (argv[0] is the name the program sees) and
// returns its exit code; an error means it could not run. A child killed
// by a signal gives 128+signal, as shells report it.
func (c Child) Run(path string, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	cmd := exec.Command(path)
	cmd.Args, cmd.Dir, cmd.Env = argv, c.Dir, c.Env
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
