package worker_test

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/worker"
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

// BenchmarkToolchainAction runs kiln cc's kind of action through two
// sandboxed workers, hermetic mode, with their file caches warm (as in a
// cold build after its first compile): one links every input (linked-),
// the other mounts usr/ from its directory cache (dircache-). The two
// take turns, action by action, so that load from elsewhere on the
// machine hits both alike. Per action and worker: the wall time from
// assignment to response (-ms/op), the CPU time of the whole process and
// its children (cpu-ms/op: worker, in-process CAS and fake server,
// sandbox init, command, and the removal of the build directory, which
// a pause after each action lets the janitor finish), and from the
// result's metadata the time to fetch and materialize the inputs
// (input-ms/op) and to run the sandbox and command (exec-ms/op).
//
//	Compile     gcc -c of a preprocessed file in kiln cc's tree
//	True        /bin/true in the same tree: all but the compiler's work
//	TrueMinimal /bin/true with only itself, libc and the loader (no mount)
//
// Compile minus True is the compiler. True minus TrueMinimal is more than
// what the toolchain's inputs cost: the sandbox starts its init with
// CLONE_NEWUSER, for which Go forks without vfork, copying the page
// tables of this process, whose in-memory CAS holds the toolchain (about
// 10 ms more per action with 300 MB of heap). KILN_BINARY=path uses that
// kiln binary as the sandbox's init, as kiln worker does.
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
			dir := b.TempDir()
			bc.tree(b, dir)
			files, dirs, links := countTree(b, dir)
			cmd := &repb.Command{
				Arguments:            bc.args,
				EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/usr/bin"}},
				OutputPaths:          []string{"kiln-out/0/answer.o"},
				WorkingDirectory:     "kiln-work",
				Platform:             &repb.Platform{Properties: []*repb.Platform_Property{{Name: "sandbox", Value: "hermetic"}}},
			}
			sides := []*benchSide{newBenchSide(b, "linked", dir, cmd, -1), newBenchSide(b, "dircache", dir, cmd, 0)}
			for _, s := range sides {
				s.run(b) // fills the file cache
				s.run(b) // and the directory cache
				s.reset()
			}
			for i := 0; b.Loop(); i++ {
				// In turns, each first every other time: whichever runs
				// second may find the machine warmer or busier.
				sides[i%2].run(b)
				sides[1-i%2].run(b)
			}
			for _, s := range sides {
				s.report(b)
			}
			b.ReportMetric(float64(files), "files")
			b.ReportMetric(float64(dirs), "dirs")
			b.ReportMetric(float64(links), "symlinks")
		})
	}
}

// benchSide is one worker of BenchmarkToolchainAction and its figures.
type benchSide struct {
	name                        string
	e                           *env
	root                        digest.Digest
	cmd                         *repb.Command
	n                           int
	wall, cpu, input, execution time.Duration
}

func newBenchSide(b *testing.B, name, dir string, cmd *repb.Command, dirCacheSize int64) *benchSide {
	e := newEnv(b, nil)
	s := &benchSide{name: name, e: e, root: e.putTree(dir), cmd: cmd}
	sandbox := sandboxedWith(b, e.workDir, os.Getenv("KILN_BINARY"))
	e.startWorker(1, func(c *worker.Config) {
		sandbox(c)
		c.DirCacheSize = dirCacheSize
	})
	return s
}

// settle is the pause after each action, in which the worker's janitor
// removes the build directory (it waits up to 5 ms for the next command).
const settle = 15 * time.Millisecond

func (s *benchSide) run(b *testing.B) {
	cpu := cpuTime()
	start := time.Now()
	resp := s.e.execute(s.cmd, s.root, time.Minute)
	wall := time.Since(start)
	time.Sleep(settle)
	if resp.GetStatus().GetCode() != 0 || resp.GetResult().GetExitCode() != 0 {
		b.Fatalf("%s: status %v, exit %d, stderr %q", s.name, resp.GetStatus(), resp.GetResult().GetExitCode(), s.e.read(resp.GetResult().GetStderrDigest()))
	}
	md := resp.GetResult().GetExecutionMetadata()
	s.n++
	s.wall += wall
	s.cpu += cpuTime() - cpu
	s.input += md.GetInputFetchCompletedTimestamp().AsTime().Sub(md.GetInputFetchStartTimestamp().AsTime())
	s.execution += md.GetExecutionCompletedTimestamp().AsTime().Sub(md.GetExecutionStartTimestamp().AsTime())
}

func (s *benchSide) reset() { s.n, s.wall, s.cpu, s.input, s.execution = 0, 0, 0, 0, 0 }

func (s *benchSide) report(b *testing.B) {
	per := float64(time.Millisecond) * float64(s.n)
	b.ReportMetric(float64(s.wall)/per, s.name+"-ms/op")
	b.ReportMetric(float64(s.cpu)/per, s.name+"-cpu-ms/op")
	b.ReportMetric(float64(s.input)/per, s.name+"-input-ms/op")
	b.ReportMetric(float64(s.execution)/per, s.name+"-exec-ms/op")
}
