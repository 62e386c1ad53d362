package worker_test

import (
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/worker"
	"github.com/kiln-build/kiln/worker/runner"
	"github.com/kiln-build/kiln/worker/runner/runnertest"
)

// putTree uploads the directory dir on disk (files, executables,
// symlinks) as an input root and returns its digest.
func (e *env) putTree(dir string) digest.Digest {
	e.t.Helper()
	r, err := runnertest.ReadInputRoot(digest.SHA256, dir)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, data := range r.Blobs {
		e.put(data)
	}
	return r.Root
}

// sandboxed makes a worker run its actions in a Sandbox that hides
// workDir, as kiln worker does.
func sandboxed(t testing.TB, workDir string) func(*worker.Config) {
	return sandboxedWith(t, workDir, "")
}

// sandboxedWith is sandboxed with init as the sandbox's init binary (""
// for this test binary).
func sandboxedWith(t testing.TB, workDir, init string) func(*worker.Config) {
	cfg := runner.SandboxConfig{UID: os.Geteuid(), GID: os.Getegid(), HidePaths: []string{workDir}, Init: init}
	if cfg.UID == 0 {
		cfg.UID, cfg.GID = runner.DefaultSandboxID, runner.DefaultSandboxID
	}
	sb, err := runner.NewSandbox(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return func(c *worker.Config) { c.Runner = sb }
}

func TestHermeticCompileThroughTheWorker(t *testing.T) {
	// The client's side: a toolchain tree and a source file, uploaded to
	// the CAS as the input root.
	tree := t.TempDir()
	err := runnertest.GCCTree(tree, true)
	if errors.Is(err, runnertest.ErrNoToolchain) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(tree, "src"), 0o755)
	os.WriteFile(filepath.Join(tree, "src", "answer.c"), []byte(runnertest.CompileSource), 0o644)
	e := newEnv(t, nil)
	root := e.putTree(tree)
	e.startWorker(1, sandboxed(t, e.workDir))

	cmd := &repb.Command{
		Arguments: []string{"/usr/bin/gcc", "-c", "src/answer.c", "-o", "out/answer.o"},
		// No gcc in PATH; the worker's PATH is not used.
		EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/tools"}},
		OutputPaths:          []string{"out/answer.o"},
		Platform:             &repb.Platform{Properties: []*repb.Platform_Property{{Name: "sandbox", Value: "hermetic"}}},
	}
	resp := e.execute(cmd, root, time.Minute)
	res := resp.GetResult()
	if res == nil {
		t.Fatalf("status %v", resp.GetStatus())
	}
	if resp.GetStatus().GetCode() != 0 || res.GetExitCode() != 0 || len(res.GetOutputFiles()) != 1 {
		t.Fatalf("status %v, exit %d, stderr %q, outputs %v", resp.GetStatus(), res.GetExitCode(), e.read(res.GetStderrDigest()), res.GetOutputFiles())
	}
	obj := e.read(res.GetOutputFiles()[0].GetDigest())
	f, err := elf.NewFile(bytes.NewReader(obj))
	if err != nil {
		t.Fatal(err)
	}
	if f.Type != elf.ET_REL || f.Section(".text") == nil {
		t.Fatalf("answer.o is a %v without .text", f.Type)
	}
}

func TestHostModeThroughTheWorker(t *testing.T) {
	// The host's tools, an output written in the build directory, and
	// nothing of the worker's directory in sight.
	e := newEnv(t, nil)
	e.startWorker(1, sandboxed(t, e.workDir))
	resp := e.execute(shell(`id -u > out/id; ls /proc | grep -c '^[0-9]' >> out/id; ls -A `+e.workDir+` >> out/id`, "out/id"), emptyRoot(), time.Minute)
	res := resp.GetResult()
	if res == nil {
		t.Fatalf("status %v", resp.GetStatus())
	}
	if resp.GetStatus().GetCode() != 0 || res.GetExitCode() != 0 || len(res.GetOutputFiles()) != 1 {
		t.Fatalf("status %v, exit %d, stderr %q", resp.GetStatus(), res.GetExitCode(), e.read(res.GetStderrDigest()))
	}
	lines := strings.Split(string(e.read(res.GetOutputFiles()[0].GetDigest())), "\n")
	// The uid, then few processes (init, sh, ls, grep), then the work
	// directory's listing: only the path down to this build directory.
	wantUID := "65534"
	if os.Geteuid() != 0 {
		wantUID = "0"
	}
	if len(lines) != 4 || lines[0] != wantUID || lines[1] != "4" || lines[2] != "build" {
		t.Fatalf("the action saw %q", lines)
	}
}
