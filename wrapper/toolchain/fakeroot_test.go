package toolchain_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/wrapper/toolchain"
)

// fakeRoot is a host file system under a temporary directory, laid out
// like a merged-/usr Debian with a few traps: absolute symlink targets, a
// relative target that climbs above "/", a library outside the loader's
// default directories. The programs are copies of a real dynamic ELF
// binary (their PT_INTERP is what Capture reads); the compiler queries
// and ldd are answered by fake functions.
type fakeRoot struct {
	dir      string
	elf      []byte
	queries  atomic.Int32 // -print-prog-name=cc1 calls: one per capture
	lddFor   map[string]string
	mu       sync.Mutex
	lddCalls []string
}

func newFakeRoot(t *testing.T) *fakeRoot {
	t.Helper()
	elf, err := os.ReadFile("/bin/true")
	if err != nil || !bytes.HasPrefix(elf, []byte("\x7fELF")) {
		t.Skip("no dynamic ELF /bin/true to copy")
	}
	f := &fakeRoot{dir: t.TempDir(), elf: elf}
	f.file(t, "usr/bin/x86_64-linux-gnu-gcc-12", elf)
	f.link(t, "usr/bin/gcc-12", "x86_64-linux-gnu-gcc-12")
	f.link(t, "usr/bin/gcc", "gcc-12")
	f.link(t, "bin", "usr/bin")
	f.file(t, "usr/lib/gcc/x86_64-linux-gnu/12/cc1", elf)
	f.file(t, "usr/bin/x86_64-linux-gnu-as", elf)
	f.link(t, "usr/bin/as", "x86_64-linux-gnu-as")
	f.link(t, "lib", "usr/lib")
	f.link(t, "lib64", "/usr/lib64") // absolute
	f.file(t, "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", []byte("loader"))
	f.link(t, "usr/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
	f.file(t, "usr/lib/x86_64-linux-gnu/libc-2.36.so", []byte("libc"))
	f.link(t, "usr/lib/x86_64-linux-gnu/libc.so.6", "libc-2.36.so")
	f.file(t, "usr/lib/x86_64-linux-gnu/libweird.so.1.0", []byte("weird"))
	// Climbs above "/": the kernel stops there; REAPI forbids it.
	f.link(t, "usr/lib/x86_64-linux-gnu/libweird.so.1", "../../../../../../usr/lib/x86_64-linux-gnu/libweird.so.1.0")
	f.file(t, "opt/vendor/lib/libv.so", []byte("vendor"))
	f.file(t, "usr/lib/gcc/x86_64-linux-gnu/12/liblto_plugin.so", []byte("not needed"))
	lddOut := "\tlinux-vdso.so.1 (0x00007ffd)\n" +
		"\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f00)\n" +
		"\tlibweird.so.1 => /usr/lib/x86_64-linux-gnu/libweird.so.1 (0x00007f01)\n" +
		"\t/lib64/ld-linux-x86-64.so.2 (0x00007f02)\n"
	f.lddFor = map[string]string{
		"/usr/bin/x86_64-linux-gnu-gcc-12":     lddOut,
		"/usr/lib/gcc/x86_64-linux-gnu/12/cc1": lddOut + "\tlibv.so => /opt/vendor/lib/libv.so (0x00007f03)\n",
		"/usr/bin/x86_64-linux-gnu-as":         lddOut,
	}
	return f
}

func (f *fakeRoot) file(t *testing.T, p string, data []byte) {
	t.Helper()
	full := filepath.Join(f.dir, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

func (f *fakeRoot) link(t *testing.T, p, target string) {
	t.Helper()
	full := filepath.Join(f.dir, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Remove(full)
	if err := os.Symlink(target, full); err != nil {
		t.Fatal(err)
	}
}

func (f *fakeRoot) capturer() *toolchain.Capturer {
	return &toolchain.Capturer{
		Fn:       digest.SHA256,
		HostRoot: f.dir,
		LookPath: func(name string) (string, error) {
			if name == "as" {
				return "/usr/bin/as", nil
			}
			return "", errors.New("not found")
		},
		Run: func(ctx context.Context, name string, args ...string) ([]byte, error) {
			if name == "ldd" {
				f.mu.Lock()
				f.lddCalls = append(f.lddCalls, args[0])
				f.mu.Unlock()
				rel := "/" + strings.TrimPrefix(strings.TrimPrefix(args[0], f.dir), "/")
				out, ok := f.lddFor[rel]
				if !ok {
					return nil, errors.New("ldd of unexpected file " + rel)
				}
				return []byte(out), nil
			}
			switch args[0] {
			case "-print-prog-name=cc1":
				f.queries.Add(1)
				return []byte("/usr/lib/gcc/x86_64-linux-gnu/12/cc1\n"), nil
			case "-print-prog-name=cc1plus":
				return []byte("cc1plus\n"), nil
			case "-print-prog-name=as":
				return []byte("as\n"), nil
			case "-print-prog-name=objcopy":
				return []byte("objcopy\n"), nil
			case "-print-file-name=specs":
				return []byte("specs\n"), nil
			}
			return nil, errors.New("unexpected query " + strings.Join(args, " "))
		},
	}
}

func TestCaptureFakeRoot(t *testing.T) {
	f := newFakeRoot(t)
	tr, err := f.capturer().Capture(context.Background(), "/bin/gcc")
	if err != nil {
		t.Fatal(err)
	}
	validate(t, tr)
	var files []string
	for _, fl := range tr.Files {
		files = append(files, fl.Path)
	}
	// Symlinks to files are copies of them; links to directories stay.
	wantFiles := []string{
		"opt/vendor/lib/libv.so",
		"usr/bin/as",
		"usr/bin/gcc",
		"usr/bin/gcc-12",
		"usr/bin/x86_64-linux-gnu-as",
		"usr/bin/x86_64-linux-gnu-gcc-12",
		"usr/lib/gcc/x86_64-linux-gnu/12/cc1",
		"usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
		"usr/lib/x86_64-linux-gnu/libc-2.36.so",
		"usr/lib/x86_64-linux-gnu/libc.so.6",
		"usr/lib/x86_64-linux-gnu/libweird.so.1",
		"usr/lib/x86_64-linux-gnu/libweird.so.1.0",
		"usr/lib64/ld-linux-x86-64.so.2",
	}
	if !reflect.DeepEqual(files, wantFiles) {
		t.Errorf("files\n got %q\nwant %q", files, wantFiles)
	}
	wantLinks := []toolchain.Symlink{
		{Path: "bin", Target: "usr/bin"},
		{Path: "lib", Target: "usr/lib"},
		{Path: "lib64", Target: "usr/lib64"}, // was /usr/lib64
	}
	if !reflect.DeepEqual(tr.Symlinks, wantLinks) {
		t.Errorf("symlinks\n got %q\nwant %q", tr.Symlinks, wantLinks)
	}
	hostOf := map[string]string{}
	for _, fl := range tr.Files {
		hostOf[fl.Path] = strings.TrimPrefix(fl.HostPath, f.dir+"/")
	}
	copies := map[string]string{
		"usr/bin/as":                             "usr/bin/x86_64-linux-gnu-as",
		"usr/bin/gcc":                            "usr/bin/x86_64-linux-gnu-gcc-12",
		"usr/bin/gcc-12":                         "usr/bin/x86_64-linux-gnu-gcc-12",
		"usr/lib/x86_64-linux-gnu/libc.so.6":     "usr/lib/x86_64-linux-gnu/libc-2.36.so",
		"usr/lib64/ld-linux-x86-64.so.2":         "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", // absolute target
		"usr/lib/x86_64-linux-gnu/libweird.so.1": "usr/lib/x86_64-linux-gnu/libweird.so.1.0",      // climbed above /
	}
	for _, fl := range tr.Files {
		want, ok := copies[fl.Path]
		if !ok {
			want = fl.Path
		}
		if hostOf[fl.Path] != want {
			t.Errorf("file %s: host path %s, want %s under the fake root", fl.Path, fl.HostPath, want)
		}
	}
	if tr.Compiler != "/bin/gcc" || tr.PathEnv != "/usr/bin" || !reflect.DeepEqual(tr.LibraryPath, []string{"/opt/vendor/lib"}) {
		t.Errorf("Compiler %q PathEnv %q LibraryPath %q", tr.Compiler, tr.PathEnv, tr.LibraryPath)
	}
	var total int64
	for _, fl := range tr.Files {
		total += fl.Digest.Size()
	}
	if tr.TotalBytes != total {
		t.Errorf("TotalBytes %d, files sum to %d", tr.TotalBytes, total)
	}

	// Laid out from its Directory messages, every path the host resolves
	// resolves inside the tree to the same content.
	out := t.TempDir()
	materialize(t, tr, out)
	for p, want := range map[string]string{
		"/bin/gcc":                            string(f.elf),
		"/lib64/ld-linux-x86-64.so.2":         "loader",
		"/lib/x86_64-linux-gnu/libc.so.6":     "libc",
		"/lib/x86_64-linux-gnu/libweird.so.1": "weird",
		"/usr/bin/as":                         string(f.elf),
		"/opt/vendor/lib/libv.so":             "vendor",
	} {
		got, err := filepath.EvalSymlinks(filepath.Join(out, p))
		if err != nil || !strings.HasPrefix(got, out+"/") {
			t.Errorf("%s resolves to %q (%v), outside the tree", p, got, err)
			continue
		}
		if data, _ := os.ReadFile(got); string(data) != want {
			t.Errorf("%s: content differs", p)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "usr/lib/gcc/x86_64-linux-gnu/12/liblto_plugin.so")); err == nil {
		t.Errorf("liblto_plugin.so captured")
	}
}

func TestCaptureErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("Script", func(t *testing.T) {
		// A wrapper script is not a compiler.
		f := newFakeRoot(t)
		f.file(t, "usr/bin/x86_64-linux-gnu-gcc-12", []byte("#!/bin/sh\nexec gcc-11 \"$@\"\n"))
		_, err := f.capturer().Capture(ctx, "/usr/bin/gcc")
		requireStatus(t, err, codes.FailedPrecondition, "/usr/bin/x86_64-linux-gnu-gcc-12 is a script, not a compiler binary: point kiln at the real compiler")
	})
	t.Run("LibraryNotFound", func(t *testing.T) {
		f := newFakeRoot(t)
		f.lddFor["/usr/lib/gcc/x86_64-linux-gnu/12/cc1"] = "\tlibisl.so.23 => not found\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x1)\n\tlibmpc.so.3 => not found\n"
		_, err := f.capturer().Capture(ctx, "/usr/bin/gcc")
		requireStatus(t, err, codes.FailedPrecondition, "ldd /usr/lib/gcc/x86_64-linux-gnu/12/cc1: libraries not found: libisl.so.23, libmpc.so.3")
	})
	t.Run("SymlinkLoop", func(t *testing.T) {
		f := newFakeRoot(t)
		f.link(t, "usr/bin/gcc", "loop1")
		f.link(t, "usr/bin/loop1", "loop2")
		f.link(t, "usr/bin/loop2", "/usr/bin/loop1")
		_, err := f.capturer().Capture(ctx, "/usr/bin/gcc")
		requireStatus(t, err, codes.FailedPrecondition, "resolve /usr/bin/gcc: too many levels of symbolic links")
	})
	t.Run("MissingCompiler", func(t *testing.T) {
		f := newFakeRoot(t)
		_, err := f.capturer().Capture(ctx, "/usr/bin/gcc-99")
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "resolve /usr/bin/gcc-99: /usr/bin/gcc-99") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("DanglingLibrary", func(t *testing.T) {
		f := newFakeRoot(t)
		os.Remove(filepath.Join(f.dir, "usr/lib/x86_64-linux-gnu/libc-2.36.so"))
		_, err := f.capturer().Capture(ctx, "/usr/bin/gcc")
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "resolve /lib/x86_64-linux-gnu/libc.so.6") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("NoCC1", func(t *testing.T) {
		f := newFakeRoot(t)
		c := f.capturer()
		run := c.Run
		c.Run = func(ctx context.Context, name string, args ...string) ([]byte, error) {
			if len(args) > 0 && args[0] == "-print-prog-name=cc1" {
				return []byte("cc1\n"), nil
			}
			return run(ctx, name, args...)
		}
		_, err := c.Capture(ctx, "/usr/bin/gcc")
		requireStatus(t, err, codes.FailedPrecondition, "/usr/bin/gcc finds neither cc1 nor cc1plus (-print-prog-name)")
	})
}

func requireStatus(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	if status.Code(err) != code || status.Convert(err).Message() != msg {
		t.Fatalf("error %v, want %s %q", err, code, msg)
	}
}

func TestParseLdd(t *testing.T) {
	for _, tc := range []struct {
		name    string
		out     string
		want    []string
		wantErr string
	}{
		{"Debian", "\tlinux-vdso.so.1 (0x00007ffc)\n\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f1)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f2)\n",
			[]string{"/lib/x86_64-linux-gnu/libz.so.1", "/lib64/ld-linux-x86-64.so.2"}, ""},
		{"OldVdso", "\tlinux-vdso.so.1 =>  (0x00007fff)\n\tlibc.so.6 => /lib64/libc.so.6 (0x1)\n", []string{"/lib64/libc.so.6"}, ""},
		{"Static", "\tstatically linked\n", nil, ""},
		{"SpaceInPath", "\tlibx.so => /opt/my libs/libx.so (0x1)\n", []string{"/opt/my libs/libx.so"}, ""},
		{"NotFound", "\tlibfoo.so.1 => not found\n", nil, "libraries not found: libfoo.so.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := toolchain.ParseLdd([]byte(tc.out))
			if tc.wantErr != "" {
				if err == nil || status.Convert(err).Message() != tc.wantErr {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
