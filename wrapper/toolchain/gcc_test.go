package toolchain_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/wrapper/toolchain"
)

// hostGCC returns the path of the host's gcc, or skips the test.
func hostGCC(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not installed")
	}
	return p
}

func TestCaptureGCC(t *testing.T) {
	gcc := hostGCC(t)
	ctx := context.Background()
	start := time.Now()
	tr, err := toolchain.Capture(ctx, gcc)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("captured %s: %d files, %d symlinks, %d directories, %.1f MiB in %v",
		gcc, len(tr.Files), len(tr.Symlinks), len(tr.Directories), float64(tr.TotalBytes)/(1<<20), time.Since(start))
	validate(t, tr)
	has := func(suffix string) bool {
		for _, f := range tr.Files {
			if strings.HasSuffix(f.Path, suffix) {
				return true
			}
		}
		return false
	}
	for _, want := range []string{"/cc1", "/cc1plus", "libc.so.6", "ld-linux-x86-64.so.2"} {
		if !has(want) {
			t.Errorf("no file ending in %s", want)
		}
	}
	if !strings.Contains(tr.PathEnv, "bin") {
		t.Errorf("PathEnv %q", tr.PathEnv)
	}
	again, err := toolchain.Capture(ctx, gcc)
	if err != nil {
		t.Fatal(err)
	}
	if again.Root != tr.Root {
		t.Fatal("two captures differ")
	}
}

// TestLoadOrCaptureGCC reports how much the cache saves.
func TestLoadOrCaptureGCC(t *testing.T) {
	gcc := hostGCC(t)
	ctx := context.Background()
	cache := t.TempDir()
	start := time.Now()
	first, err := toolchain.LoadOrCapture(ctx, cache, gcc)
	if err != nil {
		t.Fatal(err)
	}
	captured := time.Since(start)
	start = time.Now()
	second, err := toolchain.LoadOrCapture(ctx, cache, gcc)
	if err != nil {
		t.Fatal(err)
	}
	loaded := time.Since(start)
	if first.FromCache || !second.FromCache || first.Root != second.Root {
		t.Fatalf("FromCache %v %v, roots %s %s", first.FromCache, second.FromCache, first.Root, second.Root)
	}
	t.Logf("%.1f MiB: captured in %v, loaded from the cache in %v", float64(first.TotalBytes)/(1<<20), captured, loaded)
}

// TestChrootCompile lays the captured tree out as the root of a chroot,
// compiles preprocessed C and C++ there with nothing else on the file
// system and PATH=Tree.PathEnv, and requires the objects (and the .dwo of
// -gsplit-dwarf, which needs objcopy) to be byte-identical to the host's.
func TestChrootCompile(t *testing.T) {
	gcc := hostGCC(t)
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	ctx := context.Background()
	tr, err := toolchain.Capture(ctx, gcc)
	if err != nil {
		t.Fatal(err)
	}

	// Preprocess on the host.
	host := t.TempDir()
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(host, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("x.c", "#include <stdio.h>\n#include <math.h>\nint main(void) { printf(\"%f\\n\", sqrt(2.0)); return 0; }\n")
	write("y.cc", "#include <map>\n#include <string>\nstd::map<std::string, int> m{{\"a\", 1}};\nint f(const std::string& s) { return m[s]; }\n")
	run(t, host, "", gcc, "-g", "-O2", "-E", "x.c", "-o", "x.i")
	run(t, host, "", gcc, "-g", "-O2", "-E", "-x", "c++", "y.cc", "-o", "y.ii")

	var extra []toolchain.File
	for _, name := range []string{"x.i", "y.ii"} {
		p := filepath.Join(host, name)
		d, err := digestFile(p)
		if err != nil {
			t.Fatal(err)
		}
		extra = append(extra, toolchain.File{Path: "work/" + name, HostPath: p, Digest: d})
	}
	in, err := tr.WithFiles(extra...)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	materialize(t, in, root)

	t.Run("Hermetic", func(t *testing.T) {
		// The chroot holds no headers: compiling a .c file there fails,
		// which shows the other cases ran inside it.
		cmd := exec.Command(tr.Compiler, "-c", "-x", "c", "x.i", "-include", "stdio.h", "-o", "h.o")
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
		cmd.Dir = "/work"
		cmd.Env = []string{"PATH=" + tr.PathEnv}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "stdio.h: No such file or directory") {
			t.Fatalf("compiling with a header in the chroot: %v\n%s", err, out)
		}
	})
	for _, tc := range []struct {
		name    string
		args    []string
		outputs []string
	}{
		{"C", []string{"-g", "-O2", "-c", "x.i", "-o", "x.o"}, []string{"x.o"}},
		{"CXX", []string{"-g", "-O2", "-c", "y.ii", "-o", "y.o"}, []string{"y.o"}},
		{"SplitDwarf", []string{"-g", "-gsplit-dwarf", "-O2", "-c", "x.i", "-o", "s.o"}, []string{"s.o", "s.dwo"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run(t, host, "", gcc, tc.args...)
			cmd := exec.Command(tr.Compiler, tc.args...)
			cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
			cmd.Dir = "/work"
			cmd.Env = []string{"PATH=" + tr.PathEnv}
			if out, err := cmd.CombinedOutput(); err != nil {
				if errors.Is(err, syscall.EPERM) {
					t.Skipf("chroot not permitted: %v", err)
				}
				t.Fatalf("in the chroot: %s %q: %v\n%s", tr.Compiler, tc.args, err, out)
			}
			for _, o := range tc.outputs {
				want, err := os.ReadFile(filepath.Join(host, o))
				if err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(filepath.Join(root, "work", o))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s differs: %d bytes in the chroot, %d on the host", o, len(got), len(want))
				}
			}
		})
	}
}

// run runs a program in dir (on the host) and fails the test if it fails.
func run(t *testing.T, dir, _ string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, out)
	}
}

func digestFile(p string) (digest.Digest, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return digest.Digest{}, err
	}
	return digest.FromBytes(digest.SHA256, data), nil
}

func BenchmarkCaptureGCC(b *testing.B) {
	gcc := hostGCC(b)
	var bytes int64
	for b.Loop() {
		tr, err := toolchain.Capture(context.Background(), gcc)
		if err != nil {
			b.Fatal(err)
		}
		bytes = tr.TotalBytes
	}
	b.SetBytes(bytes)
}

func BenchmarkLoadCachedGCC(b *testing.B) {
	gcc := hostGCC(b)
	cache := b.TempDir()
	if _, err := toolchain.LoadOrCapture(context.Background(), cache, gcc); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		tr, err := toolchain.LoadOrCapture(context.Background(), cache, gcc)
		if err != nil || !tr.FromCache {
			b.Fatal(err)
		}
	}
}
