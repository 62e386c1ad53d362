package test

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const (
	// bazelWorkspace is the C++ workspace the test builds: a cc_library, a cc_binary and a
	// cc_test, with offline stand-ins for the repositories Bazel 4.2.3 would download.
	bazelWorkspace = "testdata/bazelws"
	// bazelCommandTimeout bounds one Bazel command, server startup included.
	bazelCommandTimeout = 5 * time.Minute
	// bazelInstanceName is the REAPI instance the test uses. It has two segments on purpose.
	bazelInstanceName = "kiln-e2e/bazel"
)

// TestBazelRemoteCache builds and tests a small C++ workspace with real Bazel using kiln as
// its remote cache, wipes Bazel's local outputs, and checks that the second run takes every
// action from kiln.
func TestBazelRemoteCache(t *testing.T) {
	bin := requireBazel(t)
	s := startServer(t)
	// After startServer, so that its cleanup (Bazel's shutdown) runs before kiln stops.
	b := newBazel(t, bin)

	flags := []string{
		"//...",
		"--remote_cache=" + s.GRPCURL(),
		"--remote_instance_name=" + bazelInstanceName,
		// Debian's system bazelrc turns on sandbox debugging, which keeps sandboxes around.
		"--nosandbox_debug",
		// bazelbuild/bazel#14426: the separate test.xml action has the test's duration in
		// its key and so misses after a cached test.
		"--noexperimental_split_xml_generation",
		"--incompatible_strict_action_env",
		"--jobs=2",
		"--test_output=errors",
		"--verbose_failures",
		"--color=no",
		"--curses=no",
	}

	// First run: nothing is cached yet, so everything runs locally and is uploaded.
	out := b.mustRun("test", flags...)
	first := mustParseSummary(t, out)
	t.Logf("first run: %s", first.Line)
	if n := first.ByKind["remote cache hit"]; n != 0 {
		t.Errorf("first run against an empty server had %d remote cache hits: %s", n, first.Line)
	}
	checkNoRemoteCacheWarnings(t, out)

	b.mustRun("clean")

	// Second run: every action that is not internal must come from kiln.
	out = b.mustRun("test", flags...)
	second := mustParseSummary(t, out)
	t.Logf("second run after bazel clean: %s", second.Line)
	checkNoRemoteCacheWarnings(t, out)
	if second.ByKind["remote cache hit"] == 0 {
		t.Errorf("second run had no remote cache hits: %s", second.Line)
	}
	requireAllHits(t, second, first.Total-first.ByKind["internal"], first.Line, out)
	// The binary of the second run was downloaded from kiln; it must still work.
	requireHelloRuns(t, b.workspace)
}

// requireAllHits checks that every non-internal process of a rebuild was a
// remote cache hit, and that there were want of them (the processes the
// first build, summarized in firstLine, ran).
func requireAllHits(t *testing.T, second processSummary, want int, firstLine, out string) {
	t.Helper()
	for kind, n := range second.ByKind {
		if kind != "internal" && kind != "remote cache hit" {
			t.Errorf("second run: %d processes were %q, want every non-internal process to be a remote cache hit: %s",
				n, kind, second.Line)
		}
	}
	if hits := second.ByKind["remote cache hit"]; hits != want {
		t.Errorf("second run had %d remote cache hits, want %d (from the first run: %s)", hits, want, firstLine)
	}
	if t.Failed() {
		t.Logf("bazel output of the second run:\n%s", out)
	}
}

// requireHelloRuns runs the workspace's greet/hello binary, built or
// downloaded by Bazel, and checks what it prints.
func requireHelloRuns(t *testing.T, workspace string) {
	t.Helper()
	hello := filepath.Join(workspace, "bazel-bin", "greet", "hello")
	got, err := exec.Command(hello).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", hello, err, got)
	}
	if want := "Hello, kiln!\n"; string(got) != want {
		t.Errorf("%s printed %q, want %q", hello, got, want)
	}
}

// remoteCacheWarning matches the warnings Bazel prints (and then carries on without the
// cache) when a remote cache read or upload fails.
var remoteCacheWarning = regexp.MustCompile(`(?im)^WARNING: .*remote cache.*$`)

// checkNoRemoteCacheWarnings fails t if Bazel worked around a failing cache: the build would
// still pass, so the warnings are the only sign.
func checkNoRemoteCacheWarnings(t *testing.T, out string) {
	t.Helper()
	if ws := remoteCacheWarning.FindAllString(out, -1); len(ws) > 0 {
		t.Errorf("Bazel warned about the remote cache:\n%s", strings.Join(ws, "\n"))
	}
}

func mustParseSummary(t *testing.T, out string) processSummary {
	t.Helper()
	s, err := parseProcessSummary(out)
	if err != nil {
		t.Fatalf("%v; bazel output:\n%s", err, out)
	}
	return s
}

// bazel runs Bazel commands in a private copy of the test workspace, with its own output
// root, home directory and server, which it shuts down when the test ends.
type bazel struct {
	t          *testing.T
	bin        string
	workspace  string
	outputRoot string
	home       string
}

// requireBazel returns the path of bazel. It skips t when there is none on PATH, and fails
// it when CI=true, since .ci/run installs Bazel and a skip there would hide a broken setup.
func requireBazel(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("bazel")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("bazel is not on PATH, but CI=true and .ci/run installs it: %v", err)
		}
		t.Skipf("bazel is not on PATH (install Debian's bazel-bootstrap to run this test): %v", err)
	}
	return bin
}

// newBazel copies the test workspace into a temporary directory and prepares to run bin
// there. The Bazel server is shut down when the test ends.
func newBazel(t *testing.T, bin string) *bazel {
	t.Helper()
	b := &bazel{t: t, bin: bin}

	b.workspace = filepath.Join(t.TempDir(), "ws")
	if err := os.CopyFS(b.workspace, os.DirFS(bazelWorkspace)); err != nil {
		t.Fatalf("copy %s: %v", bazelWorkspace, err)
	}
	b.home = t.TempDir()
	b.outputRoot = t.TempDir()
	// Bazel leaves read-only files and directories in its output root, which t.TempDir's
	// own cleanup cannot delete. Registered after t.TempDir, so it runs first.
	t.Cleanup(func() { makeWritable(t, b.outputRoot) })
	// Registered last, so it runs first: stop the Bazel server before anything is removed.
	t.Cleanup(b.shutdown)
	return b
}

// startupOptions go before the command in every invocation. They must not change between
// commands, or Bazel restarts its server.
func (b *bazel) startupOptions() []string {
	return []string{
		"--output_user_root=" + b.outputRoot,
		// Debian's system rc (/etc/bazel/bazelrc) is needed: it points Bazel at its install
		// base and local JDK. A developer's ~/.bazelrc is not wanted.
		"--nohome_rc",
		// If the test is killed before its cleanup runs, the server still goes away.
		"--max_idle_secs=300",
	}
}

// run runs one Bazel command and returns its combined output.
func (b *bazel) run(command string, args ...string) (string, error) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bazelCommandTimeout)
	defer cancel()
	argv := append(append(b.startupOptions(), command), args...)
	cmd := exec.CommandContext(ctx, b.bin, argv...)
	cmd.Dir = b.workspace
	cmd.Env = append(os.Environ(), "HOME="+b.home)
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	b.t.Logf("bazel %s: %v after %v", strings.Join(argv, " "), exitStatus(err), time.Since(start).Round(time.Millisecond))
	if ctx.Err() != nil {
		return string(out), ctx.Err()
	}
	return string(out), err
}

// mustRun is run that fails the test, showing Bazel's output, if the command fails.
func (b *bazel) mustRun(command string, args ...string) string {
	b.t.Helper()
	out, err := b.run(command, args...)
	if err != nil {
		b.t.Fatalf("bazel %s: %v; output:\n%s", command, err, out)
	}
	return out
}

// shutdown stops the Bazel server of this test's output root. It is a cleanup function.
func (b *bazel) shutdown() {
	b.t.Helper()
	if out, err := b.run("shutdown"); err != nil {
		b.t.Errorf("bazel shutdown: %v; output:\n%s", err, out)
	}
}

func exitStatus(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// makeWritable gives the owner write permission on every file under root, and full
// permission on every directory, so that root can be removed.
func makeWritable(t *testing.T, root string) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil // chmod would follow it, maybe out of root
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		want := info.Mode().Perm() | 0o200
		if d.IsDir() {
			// Called before the directory is read, so its entries become readable too.
			want |= 0o700
		}
		if want != info.Mode().Perm() {
			return os.Chmod(path, want)
		}
		return nil
	})
	if err != nil {
		t.Errorf("make %s writable for removal: %v", root, err)
	}
}
