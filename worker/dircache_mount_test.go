package worker_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/worker/runner"
	"github.com/kiln-build/kiln/worker/runner/runnertest"
)

// sharedTree lays out an input root with opt/tc, a directory big enough
// for the directory cache (20 files, a script, an empty file and a
// symlink that climbs out of it to src/answer.txt), and returns the
// digest of opt, the shallowest directory that the cache takes. In
// hermetic mode it brings the tools the scripts use.
func sharedTree(t *testing.T, root, mode string) digest.Digest {
	t.Helper()
	tc := filepath.Join(root, "opt", "tc")
	for _, d := range []string{filepath.Join(tc, "lib"), filepath.Join(tc, "bin"), filepath.Join(root, "src")} {
		os.MkdirAll(d, 0o755)
	}
	for i := range 20 {
		os.WriteFile(filepath.Join(tc, "lib", fmt.Sprintf("f%02d", i)), []byte(fmt.Sprintf("library %d\n", i)), 0o644)
	}
	os.WriteFile(filepath.Join(tc, "bin", "tool.sh"), []byte("#!/bin/sh\necho tool ran\n"), 0o755)
	os.WriteFile(filepath.Join(tc, "empty"), nil, 0o644)
	os.Symlink("../../src/answer.txt", filepath.Join(tc, "up"))
	os.WriteFile(filepath.Join(root, "src", "answer.txt"), []byte("42\n"), 0o644)
	if mode == runner.SandboxHermetic {
		if err := runnertest.AddToTree(root, "/bin/sh", "/bin/cat", "/usr/bin/stat", "/bin/readlink", "/bin/mkdir",
			"/usr/bin/touch", "/bin/rm", "/bin/chmod", "/bin/mv"); err != nil {
			t.Fatal(err)
		}
	}
	r, err := runnertest.ReadInputRoot(digest.SHA256, filepath.Join(root, "opt"))
	if err != nil {
		t.Fatal(err)
	}
	return r.Root
}

// sharedCommand runs script in mode with outputs out/result and
// out/inode.
func sharedCommand(mode, script string) *repb.Command {
	cmd := shell(script, "out/result", "out/inode")
	cmd.Platform = &repb.Platform{Properties: []*repb.Platform_Property{{Name: "sandbox", Value: mode}}}
	return cmd
}

// readShared is the script that reads opt/tc: a file, the symlink that
// climbs out of it (and its target), the script, and, in out/inode, the
// inode of opt as the command sees it.
const readShared = `set -e
{ cat opt/tc/lib/f07; cat opt/tc/up; readlink opt/tc/up; opt/tc/bin/tool.sh; stat -c %s opt/tc/empty; } > out/result
stat -c %i opt > out/inode`

// outputsOf returns the content of each output file of resp by path,
// failing t if the action did not succeed.
func (e *env) outputsOf(t *testing.T, resp *repb.ExecuteResponse) map[string]string {
	t.Helper()
	res := resp.GetResult()
	if resp.GetStatus().GetCode() != 0 || res.GetExitCode() != 0 {
		t.Fatalf("status %v, exit %d, stderr %q", resp.GetStatus(), res.GetExitCode(), e.read(res.GetStderrDigest()))
	}
	out := map[string]string{}
	for _, f := range res.GetOutputFiles() {
		out[f.GetPath()] = string(e.read(f.GetDigest()))
	}
	return out
}

// dirCacheEntry is where the worker of e caches the directory d.
func (e *env) dirCacheEntry(d digest.Digest) string {
	return filepath.Join(e.workDir, "dircache", "sha256-"+d.Hash()+"-"+strconv.FormatInt(d.Size(), 10))
}

func inodeOf(t *testing.T, p string) string {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return strconv.FormatUint(st.Ino, 10)
}

// treeListing is runnertest.Listing, failing the test on errors.
func treeListing(t *testing.T, dir string) string {
	t.Helper()
	l, err := runnertest.Listing(dir)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestDirCacheMountsSharedInputs(t *testing.T) {
	for _, mode := range []string{runner.SandboxHost, runner.SandboxHermetic} {
		t.Run(mode, func(t *testing.T) {
			tree := t.TempDir()
			opt := sharedTree(t, tree, mode)
			e := newEnv(t, nil)
			root := e.putTree(tree)
			stop := e.startWorker(1, sandboxed(t, e.workDir))
			entry := e.dirCacheEntry(opt)
			want := "library 7\n42\n../../src/answer.txt\ntool ran\n0\n"

			// First use: linked as before, and remembered.
			out := e.outputsOf(t, e.execute(sharedCommand(mode, readShared), root, time.Minute))
			if out["out/result"] != want {
				t.Fatalf("first action read %q, want %q", out["out/result"], want)
			}
			if _, err := os.Lstat(entry); !os.IsNotExist(err) {
				t.Fatalf("opt cached after its first use: %v", err)
			}
			// Second use: cached, and what the action sees is the cache's
			// directory.
			out = e.outputsOf(t, e.execute(sharedCommand(mode, readShared), root, time.Minute))
			ino := inodeOf(t, entry)
			if out["out/result"] != want || out["out/inode"] != ino+"\n" {
				t.Fatalf("second action read %q and opt is inode %q, want %q and the cache's %s", out["out/result"], out["out/inode"], want, ino)
			}
			before := treeListing(t, entry)
			// Third use: the same cached directory again.
			out = e.outputsOf(t, e.execute(sharedCommand(mode, readShared), root, time.Minute))
			if out["out/result"] != want || out["out/inode"] != ino+"\n" || inodeOf(t, entry) != ino {
				t.Fatalf("third action read %q with opt at inode %q; the cache's is now %s, was %s", out["out/result"], out["out/inode"], inodeOf(t, entry), ino)
			}

			// The action cannot change the cached directory, whatever it tries.
			write := `stat -c %i opt > out/inode; cd opt/tc
for op in "touch new" "touch lib/f01" "chmod 666 lib/f01" "rm lib/f02" "mv lib lib2" "mkdir d" "rm up"; do
	err=$($op 2>&1) && echo "$op: changed" || echo "$op: ${err##*: }"
done > ../../out/result
err=$( { echo x >> lib/f03; } 2>&1 ) && echo "append: changed" >> ../../out/result || echo "append: ${err##*: }" >> ../../out/result`
			out = e.outputsOf(t, e.execute(sharedCommand(mode, write), root, time.Minute))
			for _, line := range strings.Split(strings.TrimSpace(out["out/result"]), "\n") {
				if !strings.HasSuffix(line, ": Read-only file system") && !strings.HasSuffix(line, ": Permission denied") {
					t.Errorf("write attempt %q", line)
				}
			}
			if out["out/inode"] != ino+"\n" {
				t.Errorf("the writing action saw opt at inode %q, want the cache's %s", out["out/inode"], ino)
			}

			// Once the worker has stopped, its janitor has removed every
			// build directory, and the cached directory is as it was.
			stop()
			if after := treeListing(t, entry); after != before {
				t.Errorf("the cached directory changed:\n%s\nwas\n%s", after, before)
			}
			if ents, err := os.ReadDir(filepath.Join(e.workDir, "build")); err != nil || len(ents) != 0 {
				t.Errorf("build directories left: %v, %v", ents, err)
			}
		})
	}
}

func TestDirCacheLinksWhatTheActionWrites(t *testing.T) {
	// A directory that holds the working directory or an output, or lies
	// in an output, even through a symlink, is linked, never mounted, and
	// the output is collected as ever. Here opt and opt/tc are such
	// directories (opt/tc/lib may still be cached).
	cases := []struct {
		name string
		// change adapts the command; script writes "made" somewhere.
		change      func(cmd *repb.Command)
		script      string
		wantFile    string // output file that holds "made"
		wantCached  bool
		wantOutDirs []string
	}{
		{"OutputInside", func(c *repb.Command) { c.OutputPaths = []string{"opt/tc/gen/out.txt"} },
			`echo made > opt/tc/gen/out.txt`, "opt/tc/gen/out.txt", false, nil},
		{"OutputThroughASymlink", func(c *repb.Command) { c.OutputPaths = []string{"gen/out.txt"} },
			`echo made > gen/out.txt`, "gen/out.txt", false, nil},
		{"OutputDirectoryAbove", func(c *repb.Command) { c.OutputPaths = []string{"opt"} },
			`echo made > opt/new.txt`, "", false, []string{"opt"}},
		{"WorkingDirectoryInside", func(c *repb.Command) {
			c.WorkingDirectory = "opt/tc/bin"
			c.OutputPaths = []string{"out/x"} // opt/tc/bin/out/x
		}, `echo scratch > scratch && echo made > out/x`, "out/x", false, nil},
		// The control: the same directory with an output elsewhere.
		{"OutputElsewhere", func(c *repb.Command) { c.OutputPaths = []string{"out/x"} },
			`echo made > out/x`, "out/x", true, nil},
	}
	for _, mode := range []string{runner.SandboxHost, runner.SandboxHermetic} {
		t.Run(mode, func(t *testing.T) {
			tree := t.TempDir()
			opt := sharedTree(t, tree, mode)
			tcDir, err := runnertest.ReadInputRoot(digest.SHA256, filepath.Join(tree, "opt", "tc"))
			if err != nil {
				t.Fatal(err)
			}
			// gen leads into opt/tc.
			os.Symlink("opt/tc/gen", filepath.Join(tree, "gen"))
			e := newEnv(t, nil)
			root := e.putTree(tree)
			e.startWorker(1, sandboxed(t, e.workDir))
			for _, tc2 := range cases {
				t.Run(tc2.name, func(t *testing.T) {
					cmd := shell(tc2.script)
					cmd.Platform = &repb.Platform{Properties: []*repb.Platform_Property{{Name: "sandbox", Value: mode}}}
					tc2.change(cmd)
					// Twice: the second use is the one that would cache it.
					for range 2 {
						resp := e.execute(cmd, root, time.Minute)
						out := e.outputsOf(t, resp)
						if tc2.wantFile != "" && out[tc2.wantFile] != "made\n" {
							t.Fatalf("outputs %v, want %s", out, tc2.wantFile)
						}
						var dirs []string
						for _, d := range resp.GetResult().GetOutputDirectories() {
							dirs = append(dirs, d.GetPath())
						}
						if strings.Join(dirs, ",") != strings.Join(tc2.wantOutDirs, ",") {
							t.Fatalf("output directories %v, want %v", dirs, tc2.wantOutDirs)
						}
					}
					if _, err := os.Lstat(e.dirCacheEntry(opt)); (err == nil) != tc2.wantCached {
						t.Fatalf("opt cached: %v, want %v", err == nil, tc2.wantCached)
					}
					if _, err := os.Lstat(e.dirCacheEntry(tcDir.Root)); err == nil {
						t.Fatal("opt/tc cached")
					}
				})
			}
		})
	}
}

func TestDirCacheRebuildsARemovedEntry(t *testing.T) {
	tree := t.TempDir()
	opt := sharedTree(t, tree, runner.SandboxHost)
	e := newEnv(t, nil)
	root := e.putTree(tree)
	e.startWorker(1, sandboxed(t, e.workDir))
	for range 2 {
		e.outputsOf(t, e.execute(sharedCommand(runner.SandboxHost, readShared), root, time.Minute))
	}
	entry := e.dirCacheEntry(opt)
	// Someone removes the cached directory from under the worker.
	filepath.WalkDir(entry, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
	if err := os.RemoveAll(entry); err != nil {
		t.Fatal(err)
	}
	// The next action finds the entry gone, builds it again and mounts
	// the new one (whose inode the filesystem may have reused).
	out := e.outputsOf(t, e.execute(sharedCommand(runner.SandboxHost, readShared), root, time.Minute))
	ino := inodeOf(t, entry)
	if out["out/result"] != "library 7\n42\n../../src/answer.txt\ntool ran\n0\n" || out["out/inode"] != ino+"\n" {
		t.Fatalf("after the removal the action read %q at inode %q; the cache's is %s", out["out/result"], out["out/inode"], ino)
	}
}

func TestDirCacheMissingInputs(t *testing.T) {
	// Files of a directory to be cached are looked for with the others:
	// every missing one is reported in one FAILED_PRECONDITION, and
	// nothing is cached.
	tree := t.TempDir()
	opt := sharedTree(t, tree, runner.SandboxHost)
	os.WriteFile(filepath.Join(tree, "src", "absent.c"), []byte("not uploaded either\n"), 0o644)
	r, err := runnertest.ReadInputRoot(digest.SHA256, tree)
	if err != nil {
		t.Fatal(err)
	}
	absent := map[digest.Digest]bool{}
	for _, name := range []string{"opt/tc/lib/f03", "opt/tc/lib/f11", "src/absent.c"} {
		data, _ := os.ReadFile(filepath.Join(tree, name))
		absent[digest.FromBytes(digest.SHA256, data)] = true
	}
	e := newEnv(t, nil)
	for d, data := range r.Blobs {
		if !absent[d] {
			e.put(data)
		}
	}
	var want []string
	for d := range absent {
		want = append(want, d.Subject())
	}
	sort.Strings(want)
	stop := e.startWorker(1, sandboxed(t, e.workDir))
	for i := range 2 {
		resp := e.execute(sharedCommand(runner.SandboxHost, readShared), r.Root, time.Minute)
		requireStatus(t, resp, codes.FailedPrecondition, "3 blob(s) missing from the CAS")
		var got []string
		for _, det := range status.FromProto(resp.GetStatus()).Details() {
			if pf, ok := det.(*errdetails.PreconditionFailure); ok {
				for _, v := range pf.GetViolations() {
					got = append(got, v.GetSubject())
				}
			}
		}
		sort.Strings(got)
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("use %d: violations %v, want %v", i+1, got, want)
		}
	}
	stop()
	if _, err := os.Lstat(e.dirCacheEntry(opt)); !os.IsNotExist(err) {
		t.Fatalf("a directory with missing files was cached: %v", err)
	}
	if ents, err := os.ReadDir(filepath.Join(e.workDir, "dircache", "tmp")); err != nil || len(ents) != 0 {
		t.Fatalf("abandoned builds left: %v, %v", ents, err)
	}
}

func TestHostRunnerLinksEverything(t *testing.T) {
	// The host runner cannot mount: no directory cache, even for a
	// directory every action uses.
	tree := t.TempDir()
	sharedTree(t, tree, runner.SandboxHost)
	e := newEnv(t, nil)
	root := e.putTree(tree)
	e.startWorker(1, nil)
	for range 3 {
		out := e.outputsOf(t, e.execute(shell(readShared, "out/result", "out/inode"), root, time.Minute))
		if out["out/result"] != "library 7\n42\n../../src/answer.txt\ntool ran\n0\n" {
			t.Fatalf("read %q", out["out/result"])
		}
	}
	if _, err := os.Lstat(filepath.Join(e.workDir, "dircache")); !os.IsNotExist(err) {
		t.Fatalf("the host runner's worker has a directory cache: %v", err)
	}
}
