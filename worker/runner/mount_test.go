package runner_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/kiln-build/kiln/worker/runner"
	"github.com/kiln-build/kiln/worker/runner/runnertest"
)

// mountSource makes a directory to mount: a file, an executable script
// and a subdirectory, read-only as the worker's directory cache makes
// them, plus a file and a directory that anyone may write (so that only
// the mount stops the command), and returns it with a listing to compare
// against later.
func mountSource(t *testing.T) (string, string) {
	t.Helper()
	// Outside /tmp, which host mode replaces, and hidden from the command
	// as the worker's directory is: the init opens it first.
	base, err := os.MkdirTemp("/var/tmp", "kiln-mount-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
		os.RemoveAll(base)
	})
	src := filepath.Join(base, "src")
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "data.txt"), []byte("from the mount\n"), 0o444)
	os.WriteFile(filepath.Join(src, "sub", "tool.sh"), []byte("#!/bin/bash\necho tool ran\n"), 0o555)
	os.Mkdir(filepath.Join(src, "open"), 0o777)
	os.Chmod(filepath.Join(src, "open"), 0o777)
	os.WriteFile(filepath.Join(src, "open.txt"), []byte("anyone's\n"), 0o666)
	os.Chmod(filepath.Join(src, "open.txt"), 0o666)
	os.Chmod(filepath.Join(src, "sub"), 0o555)
	os.Chmod(src, 0o555)
	return src, listing(t, src)
}

// listing is runnertest.Listing, failing the test on errors.
func listing(t *testing.T, dir string) string {
	t.Helper()
	l, err := runnertest.Listing(dir)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestSandboxMountsAreReadOnly(t *testing.T) {
	cfg := sandboxConfig()
	src, before := mountSource(t)
	cfg.HidePaths = []string{filepath.Dir(src)}
	s := newSandbox(t, cfg)
	both(t, func(t *testing.T, mode string, req runner.Request) {
		if mode == runner.SandboxHermetic {
			addToTree(t, req.BuildDir, "/usr/bin/stat", "/bin/rm", "/bin/mv", "/bin/mkdir")
		}
		target := filepath.Join(req.BuildDir, "opt", "tc")
		os.MkdirAll(target, 0o755)
		req.Mounts = []runner.Mount{{Source: src, Target: "opt/tc"}}
		// Every way to change the mounted tree, each reported on its
		// own line with its error, then what the command reads there.
		script := `cd opt/tc
for op in "touch new" "touch data.txt" "chmod 666 data.txt" "rm data.txt" "mv sub sub2" "mkdir d" "touch sub/f" "touch open/f" "touch open.txt"; do
	err=$($op 2>&1) && echo "$op: changed" || echo "$op: ${err##*: }"
done
err=$( { echo x >> open.txt; } 2>&1 ) && echo "append: changed" || echo "append: ${err##*: }"
cat data.txt; sub/tool.sh; stat -c %i .`
		res, out, stderr := sh(t, s, req, script)
		// The cache's files are read-only to a command that does not own
		// them anyway; what anyone may write is refused by the mount.
		touchData := "Permission denied"
		if os.Geteuid() != 0 {
			touchData = "Read-only file system" // the command owns the files
		}
		want := "touch new: Read-only file system\ntouch data.txt: " + touchData + "\n" +
			"chmod 666 data.txt: Read-only file system\nrm data.txt: Read-only file system\n" +
			"mv sub sub2: Read-only file system\nmkdir d: Read-only file system\ntouch sub/f: Read-only file system\n" +
			"touch open/f: Read-only file system\ntouch open.txt: Read-only file system\nappend: Read-only file system\n" +
			"from the mount\ntool ran\n" + strconv.FormatUint(inode(t, src), 10) + "\n"
		if res.ExitCode != 0 || out != want {
			t.Fatalf("exit %d, stdout %q, want %q; stderr %q", res.ExitCode, out, want, stderr)
		}
		if after := listing(t, src); after != before {
			t.Errorf("the source changed:\n%s\nwas\n%s", after, before)
		}
		// The mount was the sandbox's alone: on the host the mount point
		// is still the empty directory it was.
		if ents, err := os.ReadDir(target); err != nil || len(ents) != 0 {
			t.Errorf("mount point on the host: %v, %v; want it empty", ents, err)
		}
	})
}

func TestSandboxMountErrors(t *testing.T) {
	s := newSandbox(t, sandboxConfig())
	src, _ := mountSource(t)
	cases := []struct {
		name   string
		mounts []runner.Mount
		want   string
	}{
		// Checked before the init starts.
		{"AbsoluteTarget", []runner.Mount{{Source: src, Target: "/opt"}}, `mount target "/opt" is not a clean path inside the input root`},
		{"TargetClimbsOut", []runner.Mount{{Source: src, Target: "../opt"}}, `mount target "../opt" is not a clean path inside the input root`},
		{"TargetNotClean", []runner.Mount{{Source: src, Target: "opt/./tc"}}, `mount target "opt/./tc" is not a clean path inside the input root`},
		{"TargetIsTheRoot", []runner.Mount{{Source: src, Target: "."}}, `mount target "." is not a clean path inside the input root`},
		{"TargetsNest", []runner.Mount{{Source: src, Target: "opt/tc"}, {Source: src, Target: "opt"}}, `mount target "opt/tc" is at or below mount target "opt"`},
		{"RelativeSource", []runner.Mount{{Source: "var/tmp", Target: "opt"}}, `mount source "var/tmp" is not a clean absolute path`},
		// Checked by the init, beneath the input root.
		{"TargetMissing", []runner.Mount{{Source: src, Target: "missing"}}, "mount point missing: no such file or directory"},
		{"TargetIsASymlink", []runner.Mount{{Source: src, Target: "link"}}, "mount point link: too many levels of symbolic links"},
		{"TargetBelowASymlinkOut", []runner.Mount{{Source: src, Target: "out/tmp"}}, "mount point out/tmp: too many levels of symbolic links"},
		{"TargetIsAFile", []runner.Mount{{Source: src, Target: "file"}}, "mount point file: not a directory"},
	}
	both(t, func(t *testing.T, mode string, req runner.Request) {
		req.Args = []string{"/bin/true"}
		os.Mkdir(filepath.Join(req.BuildDir, "opt"), 0o755)
		os.Symlink("opt", filepath.Join(req.BuildDir, "link"))
		os.Symlink("/", filepath.Join(req.BuildDir, "out"))
		os.WriteFile(filepath.Join(req.BuildDir, "file"), nil, 0o644)
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				req.Mounts = tc.mounts
				_, err := s.Run(context.Background(), req)
				requireCode(t, err, codes.Internal, tc.want)
			})
		}
	})
	t.Run("HostRunner", func(t *testing.T) {
		// The host runner is no Mounter and refuses mounts.
		var r runner.Runner = runner.NewHost()
		if _, ok := r.(runner.Mounter); ok {
			t.Fatal("the host runner claims to mount")
		}
		req := setup(t, "/bin/true")
		req.Mounts = []runner.Mount{{Source: src, Target: "opt"}}
		_, err := r.Run(context.Background(), req)
		requireCode(t, err, codes.Internal, "the host runner cannot mount 1 directories")
	})
}
