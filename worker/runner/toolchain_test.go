package runner_test

import (
	"context"
	"debug/elf"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/worker/runner"
	"github.com/kiln-build/kiln/worker/runner/runnertest"
)

func TestHermeticCompileWithAToolchainTree(t *testing.T) {
	s := newSandbox(t, sandboxConfig())
	compile := func(t *testing.T, withAs bool) (runner.Request, runner.Result, string) {
		req := setup(t, "/usr/bin/gcc", "-c", "src/answer.c", "-o", "out/answer.o")
		// The command's PATH has no gcc, and the worker's is not used.
		req.Env = []string{"PATH=/tools"}
		req.Platform = platform(runner.PropertySandbox, runner.SandboxHermetic)
		gccTree(t, req.BuildDir, withAs)
		os.MkdirAll(filepath.Join(req.BuildDir, "src"), 0o755)
		os.MkdirAll(filepath.Join(req.BuildDir, "out"), 0o755)
		os.WriteFile(filepath.Join(req.BuildDir, "src", "answer.c"), []byte(runnertest.CompileSource), 0o444)
		res, err := s.Run(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		stderr, _ := os.ReadFile(req.StderrPath)
		return req, res, string(stderr)
	}
	t.Run("Compiles", func(t *testing.T) {
		req, res, stderr := compile(t, true)
		if res.ExitCode != 0 {
			t.Fatalf("exit %d, stderr %q", res.ExitCode, stderr)
		}
		f, err := elf.Open(filepath.Join(req.BuildDir, "out", "answer.o"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if f.Type != elf.ET_REL || f.Section(".text") == nil {
			t.Fatalf("answer.o is a %v without .text", f.Type)
		}
	})
	t.Run("OnlyTheTreeIsUsed", func(t *testing.T) {
		// The control: without the assembler in the tree, the host's
		// /usr/bin/as is out of reach and the compile fails.
		_, res, stderr := compile(t, false)
		if res.ExitCode == 0 || !strings.Contains(stderr, "cannot execute 'as'") {
			t.Fatalf("exit %d, stderr %q", res.ExitCode, stderr)
		}
	})
}
