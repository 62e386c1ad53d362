package worker_test

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/kiln-build/kiln/worker/runner/runnertest"
)

// kilnCCTree lays out in root what kiln cc sends for a compile: the
// host's gcc driver, cc1 and assembler (runnertest.CompilerTree), plus
// /bin/true, and the preprocessed source under kiln-work/.
func kilnCCTree(tb testing.TB, root string) {
	tb.Helper()
	err := runnertest.CompilerTree(root, "/bin/true")
	if errors.Is(err, runnertest.ErrNoToolchain) {
		tb.Skip(err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	os.Mkdir(filepath.Join(root, "kiln-work"), 0o755)
	os.WriteFile(filepath.Join(root, "kiln-work", "answer.i"), []byte("int answer(void) { return 42; }\n"), 0o644)
}

// countTree returns the files, directories and symlinks below root.
func countTree(tb testing.TB, root string) (files, dirs, links int) {
	tb.Helper()
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case p == root:
		case d.Type()&os.ModeSymlink != 0:
			links++
		case d.IsDir():
			dirs++
		default:
			files++
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return files, dirs, links
}

// cpuTime is the CPU time this process and its waited-for children
// (sandbox inits and the commands under them) have used.
func cpuTime() time.Duration {
	var self, children syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	var total time.Duration
	for _, tv := range []syscall.Timeval{self.Utime, self.Stime, children.Utime, children.Stime} {
		total += time.Duration(tv.Nano())
	}
	return total
}

// BenchmarkToolchainAction runs kiln cc's kind of action through a
// sandboxed worker, hermetic mode, with the file cache warm (as in a cold
// build after its first compile): per action, the wall time from
// assignment to response (ms/op), the CPU time of the whole process and
// its children (cpu-ms/op: worker, in-process CAS and fake server, sandbox
// inits, commands; removing build directories included), and from the
// result's metadata the time to fetch and materialize the inputs
// (input-ms/op) and to run the sandbox and command (exec-ms/op).
//
//	Compile     gcc -c of a preprocessed file in kiln cc's tree
//	True        /bin/true in the same tree: all but the compiler's work
//	TrueMinimal /bin/true with only itself, libc and the loader
//
// Compile minus True is the compiler; True minus TrueMinimal is what the
// toolchain's inputs cost (BenchmarkMaterialize measures their part on
// the worker's side). KILN_BINARY=path uses that kiln binary as the
// sandbox's init, as kiln worker does.
func BenchmarkToolchainAction(b *testing.B) {
	cases := []struct {
		name string
		tree func(testing.TB, string)
		args []string
	}{
		{"Compile", kilnCCTree, []string{"/usr/bin/gcc", "-c", "answer.i", "-o", "kiln-out/0/answer.o"}},
		{"True", kilnCCTree, []string{"/bin/true"}},
		{"TrueMinimal", func(tb testing.TB, root string) {
			if err := runnertest.AddToTree(root, "/bin/true"); err != nil {
				tb.Fatal(err)
			}
			os.Mkdir(filepath.Join(root, "kiln-work"), 0o755)
		}, []string{"/bin/true"}},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			tree := b.TempDir()
			bc.tree(b, tree)
			files, dirs, links := countTree(b, tree)
			e := newEnv(b, nil)
			root := e.putTree(tree)
			e.startWorker(1, sandboxedWith(b, e.workDir, os.Getenv("KILN_BINARY")))
			cmd := &repb.Command{
				Arguments:            bc.args,
				EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/usr/bin"}},
				OutputPaths:          []string{"kiln-out/0/answer.o"},
				WorkingDirectory:     "kiln-work",
				Platform:             &repb.Platform{Properties: []*repb.Platform_Property{{Name: "sandbox", Value: "hermetic"}}},
			}
			run := func() *repb.ExecutedActionMetadata {
				resp := e.execute(cmd, root, time.Minute)
				if resp.GetStatus().GetCode() != 0 || resp.GetResult().GetExitCode() != 0 {
					b.Fatalf("status %v, exit %d, stderr %q", resp.GetStatus(), resp.GetResult().GetExitCode(), e.read(resp.GetResult().GetStderrDigest()))
				}
				return resp.GetResult().GetExecutionMetadata()
			}
			run() // fills the file cache
			var input, execution time.Duration
			cpu := cpuTime()
			b.ResetTimer()
			for b.Loop() {
				md := run()
				input += md.GetInputFetchCompletedTimestamp().AsTime().Sub(md.GetInputFetchStartTimestamp().AsTime())
				execution += md.GetExecutionCompletedTimestamp().AsTime().Sub(md.GetExecutionStartTimestamp().AsTime())
			}
			b.StopTimer()
			n := float64(b.N)
			ms := float64(time.Millisecond)
			b.ReportMetric(float64(cpuTime()-cpu)/ms/n, "cpu-ms/op")
			b.ReportMetric(float64(input)/ms/n, "input-ms/op")
			b.ReportMetric(float64(execution)/ms/n, "exec-ms/op")
			b.ReportMetric(float64(files), "files")
			b.ReportMetric(float64(dirs), "dirs")
			b.ReportMetric(float64(links), "symlinks")
		})
	}
}
