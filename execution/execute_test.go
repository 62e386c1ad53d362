package execution_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/cas/digest"
)

// ranScript leaves a mark when it runs, so a test can tell that it did not.
const ranScript = `echo ran >> "$MARKS/ran"`

// requireRejected runs Execute for action and checks that it fails at once with code,
// mentioning want, and that nothing was queued, run or stored: no operation, no command
// handed to the runner, no mark, no blob or action-cache entry written.
func (h *harness) requireRejected(action digest.Digest, code codes.Code, want string) error {
	h.t.Helper()
	runs, puts, results := h.runner.runs.Load(), h.blobs.puts.Load(), h.results.puts.Load()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	op, err := h.execute(ctx, request(action))
	if err == nil {
		h.t.Fatalf("Execute returned operation %v, want %v mentioning %q", op, code, want)
	}
	requireStatus(h.t, err, code, want)
	if st := h.sched.Stats(); st.Operations+st.Completed != 0 {
		h.t.Errorf("the scheduler has %d operations and %d completed ones, want none", st.Operations, st.Completed)
	}
	if n := h.runner.runs.Load() - runs; n != 0 {
		h.t.Errorf("%d commands ran, want none", n)
	}
	if m := h.mark("ran"); m != "" {
		h.t.Errorf("the command ran: %q", m)
	}
	if n := h.blobs.puts.Load() - puts; n != 0 {
		h.t.Errorf("%d blobs were stored in the CAS, want none", n)
	}
	if n := h.results.puts.Load() - results; n != 0 {
		h.t.Errorf("%d action results were stored, want none", n)
	}
	h.requireNotCached(action)
	return err
}

// TestExecuteRejectsBadInputTree: Execute itself refuses input roots with names or
// symlinks that could make a worker write outside the build directory.
func TestExecuteRejectsBadInputTree(t *testing.T) {
	h := newHarness(t, 2)
	file := h.put([]byte("content")).Proto()
	empty := h.putProto(&repb.Directory{}).Proto()
	for _, tc := range []struct {
		name string
		// root builds the input root; sub is a helper that uploads a subdirectory.
		root func(sub func(*repb.Directory) *repb.Digest) *repb.Directory
		want string
	}{
		{
			// A file name with a slash names a path, not an entry.
			name: "FileNameWithSlash",
			root: func(func(*repb.Directory) *repb.Digest) *repb.Directory {
				return &repb.Directory{Files: []*repb.FileNode{{Name: "a/b", Digest: file}}}
			},
			want: `"a/b"`,
		},
		{
			// "." as a directory name.
			name: "DirectoryNamedDot",
			root: func(func(*repb.Directory) *repb.Digest) *repb.Directory {
				return &repb.Directory{Directories: []*repb.DirectoryNode{{Name: ".", Digest: empty}}}
			},
			want: `"."`,
		},
		{
			// ".." as a file name would write into the parent of the input root.
			name: "FileNamedDotDot",
			root: func(func(*repb.Directory) *repb.Digest) *repb.Directory {
				return &repb.Directory{Files: []*repb.FileNode{{Name: "..", Digest: file}}}
			},
			want: `".."`,
		},
		{
			// ".." deeper down is caught too.
			name: "DotDotInSubdirectory",
			root: func(sub func(*repb.Directory) *repb.Digest) *repb.Directory {
				d := sub(&repb.Directory{Symlinks: []*repb.SymlinkNode{{Name: "..", Target: "x"}}})
				return &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "d", Digest: d}}}
			},
			want: `".."`,
		},
		{
			// The same name twice in one list.
			name: "DuplicateFiles",
			root: func(func(*repb.Directory) *repb.Digest) *repb.Directory {
				return &repb.Directory{Files: []*repb.FileNode{{Name: "x", Digest: file}, {Name: "x", Digest: file}}}
			},
			want: `"x"`,
		},
		{
			// The same name as a file and as a directory.
			name: "FileAndDirectoryWithOneName",
			root: func(func(*repb.Directory) *repb.Digest) *repb.Directory {
				return &repb.Directory{
					Files:       []*repb.FileNode{{Name: "x", Digest: file}},
					Directories: []*repb.DirectoryNode{{Name: "x", Digest: empty}},
				}
			},
			want: `"x"`,
		},
		{
			// A symlink at the top that climbs out of the input root.
			name: "SymlinkEscapes",
			root: func(func(*repb.Directory) *repb.Digest) *repb.Directory {
				return &repb.Directory{Symlinks: []*repb.SymlinkNode{{Name: "s", Target: "../outside"}}}
			},
			want: "escapes the input root",
		},
		{
			// One level down, "../.." climbs out as well.
			name: "SymlinkEscapesFromSubdirectory",
			root: func(sub func(*repb.Directory) *repb.Digest) *repb.Directory {
				d := sub(&repb.Directory{Symlinks: []*repb.SymlinkNode{{Name: "s", Target: "../../etc/passwd"}}})
				return &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "d", Digest: d}}}
			},
			want: "escapes the input root",
		},
		{
			// An absolute target points at the worker's own filesystem.
			name: "SymlinkAbsolute",
			root: func(func(*repb.Directory) *repb.Digest) *repb.Directory {
				return &repb.Directory{Symlinks: []*repb.SymlinkNode{{Name: "s", Target: "/etc/passwd"}}}
			},
			want: "absolute",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.t = t
			sub := func(d *repb.Directory) *repb.Digest { return h.putProto(d).Proto() }
			root := h.putProto(tc.root(sub))
			action := h.action(actionSpec{cmd: h.shell(ranScript), root: root})
			h.requireRejected(action, codes.InvalidArgument, tc.want)
		})
	}
}

// TestExecuteRejectsBadCommand: output paths that are absolute or leave the working
// directory, and platforms that are not sorted, are INVALID_ARGUMENT from Execute.
func TestExecuteRejectsBadCommand(t *testing.T) {
	h := newHarness(t, 2)
	for _, tc := range []struct {
		name string
		mod  func(*repb.Command, *actionSpec)
		want string
	}{
		{
			// REAPI 2.1 output_paths, absolute.
			name: "OutputPathAbsolute",
			mod:  func(c *repb.Command, _ *actionSpec) { c.OutputPaths = []string{"/tmp/out"} },
			want: `"/tmp/out" is absolute`,
		},
		{
			// output_paths climbing out of the working directory.
			name: "OutputPathEscapes",
			mod:  func(c *repb.Command, _ *actionSpec) { c.OutputPaths = []string{"../out"} },
			want: `"../out" has a ".." segment`,
		},
		{
			// Escaping through a detour is escaping.
			name: "OutputFileEscapesThroughDetour",
			mod:  func(c *repb.Command, _ *actionSpec) { c.OutputFiles = []string{"a/../../out"} },
			want: `"a/../../out" has a ".." segment`,
		},
		{
			// Legacy output_directories, absolute.
			name: "OutputDirectoryAbsolute",
			mod:  func(c *repb.Command, _ *actionSpec) { c.OutputDirectories = []string{"/out"} },
			want: `"/out" is absolute`,
		},
		{
			// A working directory below the root does not license climbing out of it.
			name: "OutputPathEscapesWorkingDirectory",
			mod: func(c *repb.Command, _ *actionSpec) {
				c.WorkingDirectory = "sub"
				c.OutputPaths = []string{"../../out"}
			},
			want: `"../../out" has a ".." segment`,
		},
		{
			// The working directory itself must stay inside the input root.
			name: "WorkingDirectoryEscapes",
			mod:  func(c *repb.Command, _ *actionSpec) { c.WorkingDirectory = "../elsewhere" },
			want: "working_directory",
		},
		{
			// Action.platform properties out of name order.
			name: "ActionPlatformUnsortedNames",
			mod: func(_ *repb.Command, s *actionSpec) {
				s.platform = &repb.Platform{Properties: []*repb.Platform_Property{
					{Name: "OSFamily", Value: "linux"}, {Name: "ISA", Value: "x86-64"},
				}}
			},
			want: "not sorted",
		},
		{
			// One name twice, values out of order.
			name: "ActionPlatformUnsortedValues",
			mod: func(_ *repb.Command, s *actionSpec) {
				s.platform = &repb.Platform{Properties: []*repb.Platform_Property{
					{Name: "OSFamily", Value: "linux"}, {Name: "OSFamily", Value: "freebsd"},
				}}
			},
			want: "not sorted",
		},
		{
			// Older clients put the platform in the Command; it must be sorted too.
			name: "CommandPlatformUnsorted",
			mod: func(c *repb.Command, _ *actionSpec) {
				c.Platform = &repb.Platform{Properties: []*repb.Platform_Property{
					{Name: "b", Value: "1"}, {Name: "a", Value: "1"},
				}}
			},
			want: "not sorted",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.t = t
			spec := actionSpec{cmd: h.shell(ranScript)}
			tc.mod(spec.cmd, &spec)
			h.requireRejected(h.action(spec), codes.InvalidArgument, tc.want)
		})
	}
}

// missingSubjects returns the subjects of the MISSING violations in err's
// PreconditionFailure details, sorted, and fails t if there is no such detail or a
// violation of another type.
func missingSubjects(t *testing.T, err error) []string {
	t.Helper()
	var subjects []string
	found := false
	for _, d := range status.Convert(err).Details() {
		pf, ok := d.(*errdetails.PreconditionFailure)
		if !ok {
			continue
		}
		found = true
		for _, v := range pf.GetViolations() {
			if v.GetType() != "MISSING" {
				t.Errorf("violation %v: type %q, want MISSING", v, v.GetType())
			}
			subjects = append(subjects, v.GetSubject())
		}
	}
	if !found {
		t.Fatalf("%v has no PreconditionFailure detail", err)
	}
	slices.Sort(subjects)
	return subjects
}

func subjects(ds ...digest.Digest) []string {
	var out []string
	for _, d := range ds {
		out = append(out, "blobs/"+d.Hash()+"/"+strconv.FormatInt(d.Size(), 10))
	}
	slices.Sort(out)
	return out
}

// TestExecuteMissingBlobs: what Execute needs and the CAS lacks is FAILED_PRECONDITION with
// one MISSING violation per blob, subject blobs/{hash}/{size}: what makes Bazel upload
// them and retry.
func TestExecuteMissingBlobs(t *testing.T) {
	h := newHarness(t, 2)

	t.Run("InputFilesAndDirectories", func(t *testing.T) {
		// Every missing blob of the tree is reported at once, at any depth.
		h.t = t
		absentA := digest.FromBytes(digest.SHA256, []byte("never uploaded a"))
		absentC := digest.FromBytes(digest.SHA256, []byte("never uploaded c"))
		absentDir := digest.FromBytes(digest.SHA256, mustMarshal(t, &repb.Directory{
			Files: []*repb.FileNode{{Name: "z", Digest: absentA.Proto()}},
		}))
		present := h.put([]byte("present b"))
		d2 := h.putProto(&repb.Directory{Files: []*repb.FileNode{{Name: "c", Digest: absentC.Proto()}}})
		root := h.putProto(&repb.Directory{
			Files: []*repb.FileNode{{Name: "a", Digest: absentA.Proto()}, {Name: "b", Digest: present.Proto()}},
			Directories: []*repb.DirectoryNode{
				{Name: "d1", Digest: absentDir.Proto()},
				{Name: "d2", Digest: d2.Proto()},
			},
		})
		action := h.action(actionSpec{cmd: h.shell(ranScript), root: root})
		err := h.requireRejected(action, codes.FailedPrecondition, "missing")
		if got, want := missingSubjects(t, err), subjects(absentA, absentC, absentDir); !slices.Equal(got, want) {
			t.Errorf("missing subjects %q, want %q", got, want)
		}
	})

	t.Run("InputRoot", func(t *testing.T) {
		// The root directory itself.
		h.t = t
		root := digest.FromBytes(digest.SHA256, mustMarshal(t, &repb.Directory{
			Files: []*repb.FileNode{{Name: "f", Digest: h.put([]byte("f")).Proto()}},
		}))
		action := h.action(actionSpec{cmd: h.shell(ranScript), root: root})
		err := h.requireRejected(action, codes.FailedPrecondition, "missing")
		if got, want := missingSubjects(t, err), subjects(root); !slices.Equal(got, want) {
			t.Errorf("missing subjects %q, want %q", got, want)
		}
	})

	t.Run("Action", func(t *testing.T) {
		// An action digest the CAS never saw.
		h.t = t
		action := digest.FromBytes(digest.SHA256, []byte("not an uploaded action"))
		err := h.requireRejected(action, codes.FailedPrecondition, "action")
		if got, want := missingSubjects(t, err), subjects(action); !slices.Equal(got, want) {
			t.Errorf("missing subjects %q, want %q", got, want)
		}
	})

	t.Run("Command", func(t *testing.T) {
		// The Action is there, its Command is not.
		h.t = t
		cmd := digest.FromBytes(digest.SHA256, mustMarshal(t, h.shell(ranScript+" # never uploaded")))
		action := h.putProto(&repb.Action{CommandDigest: cmd.Proto(), InputRootDigest: h.putProto(&repb.Directory{}).Proto()})
		err := h.requireRejected(action, codes.FailedPrecondition, "command")
		if got, want := missingSubjects(t, err), subjects(cmd); !slices.Equal(got, want) {
			t.Errorf("missing subjects %q, want %q", got, want)
		}
	})
}

// TestExecuteProgramNotFound: a command whose program does not exist is accepted and
// completes with ExecuteResponse.status INVALID_ARGUMENT; Operation.error stays unset and
// nothing is cached.
func TestExecuteProgramNotFound(t *testing.T) {
	h := newHarness(t, 2)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"AbsolutePath", []string{"/nonexistent/kiln-no-such-program"}},
		{"SearchedInPATH", []string{"kiln-no-such-program"}},
		{"RelativeToWorkingDirectory", []string{"./kiln-no-such-program"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.t = t
			cmd := h.shell("")
			cmd.Arguments = tc.args
			action := h.action(actionSpec{cmd: cmd})
			resp := h.mustExecute(request(action))
			if c := codes.Code(resp.GetStatus().GetCode()); c != codes.InvalidArgument || !strings.Contains(resp.GetStatus().GetMessage(), "kiln-no-such-program") {
				t.Errorf("status %v %q, want INVALID_ARGUMENT naming the program", c, resp.GetStatus().GetMessage())
			}
			if resp.GetResult() != nil {
				t.Errorf("result %v, want none: nothing ran", resp.GetResult())
			}
			h.requireNotCached(action)
		})
	}
}

// TestExecuteLargeStdout: 100 MiB on stdout is a normal result. The worker streams it to
// the CAS, and the client downloads it by digest.
func TestExecuteLargeStdout(t *testing.T) {
	const size = 100 << 20
	h := newHarness(t, 2)
	// yes prints "kiln\n" forever; 100 MiB is exactly 20 Mi lines.
	action := h.action(actionSpec{cmd: h.shell("yes kiln | head -c " + strconv.Itoa(size))})
	resp := h.mustExecute(request(action))
	if c := codes.Code(resp.GetStatus().GetCode()); c != codes.OK {
		t.Fatalf("status %v %q, want OK", c, resp.GetStatus().GetMessage())
	}
	res := resp.GetResult()
	if res.GetExitCode() != 0 {
		t.Fatalf("exit code %d, want 0", res.GetExitCode())
	}
	want := sha256.Sum256(bytes.Repeat([]byte("kiln\n"), size/5))
	if got := res.GetStdoutDigest(); got.GetSizeBytes() != size || got.GetHash() != hex.EncodeToString(want[:]) {
		t.Fatalf("stdout digest %v, want %x/%d", got, want, size)
	}
	// DownloadToFile checks the bytes against the digest as they arrive.
	d, _ := digest.FromProto(digest.SHA256, res.GetStdoutDigest())
	path := filepath.Join(t.TempDir(), "stdout")
	if err := h.cas.DownloadToFile(context.Background(), d, path, false); err != nil {
		t.Fatalf("download stdout: %v", err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hash := sha256.New()
	n, err := io.Copy(hash, f)
	if err != nil {
		t.Fatal(err)
	}
	if n != size || !bytes.Equal(hash.Sum(nil), want[:]) {
		t.Errorf("downloaded %d bytes hashing to %x, want %d hashing to %x", n, hash.Sum(nil), size, want)
	}
}

// processGone reports whether pid has exited (a zombie has: it only waits to be reaped).
func processGone(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// "pid (comm) S ...": the state follows the last ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && (s[i+2] == 'Z' || s[i+2] == 'X')
}

// waitGone waits up to 10s for every pid to exit.
func waitGone(t *testing.T, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for !processGone(pid) {
			if time.Now().After(deadline) {
				t.Errorf("process %d is still running", pid)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// pids reads the pid files that treeScript writes.
func (h *harness) pids() []int {
	h.t.Helper()
	var out []int
	for _, name := range []string{"parent", "child"} {
		pid, err := strconv.Atoi(strings.TrimSpace(h.mark(name)))
		if err != nil {
			h.t.Fatalf("pid file %s: %v", name, err)
		}
		out = append(out, pid)
	}
	return out
}

// treeScript starts a process tree (the shell and a background sleep), records both pids
// in the marks directory, prints a line and waits.
const treeScript = `echo $$ > "$MARKS/parent"; sleep 300 & echo $! > "$MARKS/child"; echo partial; wait`

// TestExecuteTimeout: an action past its Action.timeout ends with status
// DEADLINE_EXCEEDED and its result so far (stdout kept), its whole process tree killed,
// and nothing cached.
func TestExecuteTimeout(t *testing.T) {
	h := newHarness(t, 2)
	action := h.action(actionSpec{cmd: h.shell(treeScript), timeout: time.Second})
	start := time.Now()
	resp := h.mustExecute(request(action))
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("a 1s timeout took %v", took)
	}
	if c := codes.Code(resp.GetStatus().GetCode()); c != codes.DeadlineExceeded {
		t.Errorf("status %v %q, want DEADLINE_EXCEEDED", c, resp.GetStatus().GetMessage())
	}
	if resp.GetResult() == nil {
		t.Fatal("no result: the partial output must be kept")
	}
	if got := string(h.read(resp.GetResult().GetStdoutDigest())); got != "partial\n" {
		t.Errorf("stdout %q, want %q", got, "partial\n")
	}
	waitGone(t, h.pids()...)
	h.requireNotCached(action)
}

// TestExecuteResultsAndCaching: which results go to the action cache and when Execute
// answers from it.
func TestExecuteResultsAndCaching(t *testing.T) {
	h := newHarness(t, 2)

	t.Run("NonZeroExitIsAResultNotCached", func(t *testing.T) {
		// A failing command is a successful execution with its exit code, output and no
		// error status; it is not cached, so a second Execute runs it again.
		h.t = t
		action := h.action(actionSpec{cmd: h.shell(`echo out; echo err >&2; echo x >> "$MARKS/exit3"; exit 3`)})
		for i := 1; i <= 2; i++ {
			resp := h.mustExecute(request(action))
			if c := codes.Code(resp.GetStatus().GetCode()); c != codes.OK {
				t.Errorf("run %d: status %v %q, want OK", i, c, resp.GetStatus().GetMessage())
			}
			if resp.GetCachedResult() {
				t.Errorf("run %d: cached_result", i)
			}
			res := resp.GetResult()
			if res.GetExitCode() != 3 {
				t.Fatalf("run %d: exit code %d, want 3", i, res.GetExitCode())
			}
			if got := string(h.read(res.GetStdoutDigest())); got != "out\n" {
				t.Errorf("stdout %q", got)
			}
			if got := string(h.read(res.GetStderrDigest())); got != "err\n" {
				t.Errorf("stderr %q", got)
			}
			h.requireNotCached(action)
		}
		if got := h.mark("exit3"); got != "x\nx\n" {
			t.Errorf("ran %d times, want 2", strings.Count(got, "x"))
		}
	})

	t.Run("DoNotCache", func(t *testing.T) {
		// do_not_cache: never stored, never looked up.
		h.t = t
		action := h.action(actionSpec{cmd: h.shell(`echo x >> "$MARKS/nocache"`), doNotCache: true})
		for i := 1; i <= 2; i++ {
			resp := h.mustExecute(request(action))
			if c := codes.Code(resp.GetStatus().GetCode()); c != codes.OK || resp.GetResult().GetExitCode() != 0 || resp.GetCachedResult() {
				t.Errorf("run %d: status %v, exit code %d, cached_result %v; want OK, 0, false",
					i, c, resp.GetResult().GetExitCode(), resp.GetCachedResult())
			}
			h.requireNotCached(action)
		}
		if got := h.mark("nocache"); got != "x\nx\n" {
			t.Errorf("ran %d times, want 2", strings.Count(got, "x"))
		}
	})

	t.Run("SecondExecuteIsCached", func(t *testing.T) {
		// A successful action is stored; the next Execute answers with cached_result and
		// the same result, without running it; skip_cache_lookup runs it again.
		h.t = t
		action := h.action(actionSpec{cmd: h.shell(`echo x >> "$MARKS/cached"; echo hello`)})
		first := h.mustExecute(request(action))
		if c := codes.Code(first.GetStatus().GetCode()); c != codes.OK || first.GetResult().GetExitCode() != 0 || first.GetCachedResult() {
			t.Fatalf("first run: status %v %q, exit code %d, cached_result %v; want OK, 0, false",
				c, first.GetStatus().GetMessage(), first.GetResult().GetExitCode(), first.GetCachedResult())
		}
		second := h.mustExecute(request(action))
		if !second.GetCachedResult() {
			t.Errorf("second Execute: cached_result is false")
		}
		if got, want := second.GetResult().GetStdoutDigest(), first.GetResult().GetStdoutDigest(); got.GetHash() != want.GetHash() {
			t.Errorf("cached stdout %v, want %v", got, want)
		}
		if got := h.mark("cached"); got != "x\n" {
			t.Errorf("ran %d times before skip_cache_lookup, want 1", strings.Count(got, "x"))
		}

		req := request(action)
		req.SkipCacheLookup = true
		third := h.mustExecute(req)
		if third.GetCachedResult() || third.GetResult().GetExitCode() != 0 {
			t.Errorf("skip_cache_lookup: cached_result %v, exit code %d; want a fresh run", third.GetCachedResult(), third.GetResult().GetExitCode())
		}
		if got := h.mark("cached"); got != "x\nx\n" {
			t.Errorf("ran %d times, want 2: skip_cache_lookup must run the action again", strings.Count(got, "x"))
		}
	})
}

func TestExecuteSendsSmallInputTreesToTheWorker(t *testing.T) {
	// The server reads every directory of the input tree to check it. A
	// small tree goes to the worker with the assignment, so each directory
	// is read once; a large one (over 64 KiB of directories) the worker
	// fetches with GetTree, which reads it again.
	h := newHarness(t, 1)
	file := h.put([]byte("input file\n"))
	sub := h.putProto(&repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: file.Proto()}}})
	for _, tc := range []struct {
		name  string
		extra int // empty files with long names in the root: 300 bytes each
		reads int
	}{
		{"Small", 0, 1},
		{"Large", 250, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.t = t
			root := &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "sub", Digest: sub.Proto()}}}
			for i := range tc.extra {
				root.Files = append(root.Files, &repb.FileNode{
					Name: fmt.Sprintf("%04d-%s", i, strings.Repeat("x", 200)), Digest: digest.Empty(digest.SHA256).Proto(),
				})
			}
			rd := h.putProto(root)
			action := h.action(actionSpec{cmd: h.shell("cat sub/f"), root: rd, salt: tc.name})
			resp := h.mustExecute(request(action))
			if resp.GetResult().GetExitCode() != 0 || string(h.read(resp.GetResult().GetStdoutDigest())) != "input file\n" {
				t.Fatalf("status %v, exit code %d", resp.GetStatus(), resp.GetResult().GetExitCode())
			}
			if n := h.blobs.getsOf(rd); n != tc.reads {
				t.Errorf("input root read %d times, want %d", n, tc.reads)
			}
		})
	}
}
