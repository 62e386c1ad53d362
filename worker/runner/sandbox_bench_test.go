package runner_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/kiln-build/kiln/worker/runner"
)

// BenchmarkRun measures one action from start to the end of its process
// tree: /bin/true in each runner and mode. The sandbox's cost per action
// is the difference from Host: namespaces, mounts, the init's start, and
// their teardown.
func BenchmarkRun(b *testing.B) {
	sb, err := runner.NewSandbox(sandboxConfig())
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name string
		r    runner.Runner
		mode string
	}{
		{"Host", runner.NewHost(), ""},
		{"SandboxHost", sb, runner.SandboxHost},
		{"SandboxHermetic", sb, runner.SandboxHermetic},
	}
	// The init is the running binary, whose C init runs before Go's
	// runtime and packages would start: what the binary's size costs is
	// its exec. KILN_BINARY=path (a kiln built with go build) measures
	// with the kiln command, the init of kiln worker.
	if exe := os.Getenv("KILN_BINARY"); exe != "" {
		kb, err := runner.NewSandbox(sandboxConfig())
		if err != nil {
			b.Fatal(err)
		}
		runner.SetExecutable(kb, exe)
		cases = append(cases, struct {
			name string
			r    runner.Runner
			mode string
		}{"KilnBinaryHost", kb, runner.SandboxHost}, struct {
			name string
			r    runner.Runner
			mode string
		}{"KilnBinaryHermetic", kb, runner.SandboxHermetic})
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			base := b.TempDir()
			root := filepath.Join(base, "root")
			os.Mkdir(root, 0o755)
			if bc.mode == runner.SandboxHermetic {
				addToTree(b, root, "/bin/true")
			}
			req := runner.Request{
				Args: []string{"/bin/true"}, Dir: root, BuildDir: root,
				StdoutPath: filepath.Join(base, "stdout"), StderrPath: filepath.Join(base, "stderr"),
			}
			if bc.mode != "" {
				req.Platform = []*repb.Platform_Property{{Name: runner.PropertySandbox, Value: bc.mode}}
			}
			b.ResetTimer()
			for b.Loop() {
				res, err := bc.r.Run(context.Background(), req)
				if err != nil || res.ExitCode != 0 {
					out, _ := os.ReadFile(req.StderrPath)
					b.Fatalf("exit %d, %v: %s", res.ExitCode, err, out)
				}
			}
		})
	}
}
