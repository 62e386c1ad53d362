package fastpath_test

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/wrapper/cmdline"
	"github.com/kiln-build/kiln/wrapper/config"
	"github.com/kiln-build/kiln/wrapper/decide"
	"github.com/kiln-build/kiln/wrapper/fastpath"
	"github.com/kiln-build/kiln/wrapper/fastpath/optab"
	"github.com/kiln-build/kiln/wrapper/stats"
)

func TestOptabCurrent(t *testing.T) {
	// optab.h must be what cmdline's table generates today.
	got, err := os.ReadFile("optab.h")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != optab.Header() {
		t.Fatal("optab.h is stale: run go generate ./wrapper/fastpath")
	}
}

// fastReasons are the decisions the C side makes; it leaves every other
// one to Go.
var fastReasons = map[cmdline.Reason]bool{
	cmdline.ReasonQuery:          true,
	cmdline.ReasonPreprocessOnly: true,
	cmdline.ReasonLink:           true,
	cmdline.ReasonConftest:       true,
}

// checkAgrees fails when the C side's decision for compiler and args
// differs from Go's: C must give exactly the fast reasons, exactly where
// Go's parser gives them, and nothing for a response file.
func checkAgrees(t *testing.T, compiler string, args []string) {
	t.Helper()
	reason, ok := fastpath.Decide(compiler, args)
	for _, a := range args {
		if strings.HasPrefix(a, "@") || len(a) >= 4096 {
			if ok {
				t.Fatalf("%s %q: C decided %s with a response file or a huge argument", compiler, args, reason)
			}
			return
		}
	}
	inv, err := cmdline.ParseWithOptions(compiler, args, cmdline.Options{
		ReadFile: func(string) ([]byte, error) { return nil, fs.ErrNotExist },
		Exists:   func(string) bool { return false },
	})
	if err != nil {
		t.Fatalf("%s %q: Go parse: %v", compiler, args, err)
	}
	d := inv.Decision
	want := !d.Remote && fastReasons[d.Reason]
	if ok != want || (ok && reason != d.Reason.String()) {
		t.Fatalf("%s %q: C says %q (%v), Go says %s", compiler, args, reason, ok, d)
	}
}

func TestDecideAgrees(t *testing.T) {
	for _, tc := range []struct {
		compiler, line, want string // want "" means left to Go
	}{
		{"gcc", "--version", "query"},
		{"gcc", "-frobnicate --version", "query"},
		{"gcc", "-v -c x.c", "query"},
		{"gcc", "-print-file-name=libc.so", "query"},
		{"gcc", "--help=optimizers", "query"},
		{"gcc", "-o --version -c x.c", ""},
		{"gcc", "-E x.c", "preprocess_only"},
		{"gcc", "-M -MD -c x.c", "preprocess_only"},
		{"gcc", "-MM x.c", "preprocess_only"},
		{"gcc", "-o -E -c x.c", ""},
		{"gcc", "-Efoo -c x.c", ""},
		{"gcc", "x.o y.o -o prog -lm", "link"},
		{"gcc", "-o conftest -g -O2 conftest.c", "link"},
		{"gcc", "-o -c x.c", "link"},
		{"gcc", "-c", ""},
		{"gcc", "-c -g -O2 conftest.c", "conftest"},
		{"gcc", "-c -march=native conftest.c", "conftest"},
		{"g++-12", "-c -DHAVE_X=1 conftest.cpp", "conftest"},
		{"gcc", "-c probe.c -o conftest.o", "conftest"},
		{"gcc", "-c probe.c -oconftest2.o", "conftest"},
		{"gcc", "-c conftest.c -o real.o", "conftest"},
		{"gcc", "-c ztest1234.c", "conftest"},
		{"gcc", "-c ztest.c", ""},
		{"gcc", "-c ztest12a.c", ""},
		{"cc", "-o CMakeFiles/cmTC_1a2b.dir/src.c.o -c src.c", "conftest"},
		{"cc", "-o cmTC_1.dir/../x.o -c src.c", ""},
		{"cc", "-c /tmp/CMakeFiles/CMakeTmp/src.c", "conftest"},
		{"cc", "-c /tmp/CMakeFiles/CMakeScratch/x/src.c", "conftest"},
		{"cc", "-c CMakeFiles/CMakeTmp", ""},
		{"cc", "-c /usr/share/cmake/CMakeCCompilerId.c", "conftest"},
		{"cc", "-c build/meson-private/sanity.c", "conftest"},
		{"gcc", "-c x.c", ""},
		{"gcc", "-c x.c -o x.o -MD -MF x.d", ""},
		{"gcc", "-c a.c b.c", ""},
		{"gcc", "-S conftest.c", "conftest"},
		{"gcc", "-c x.c @rsp", ""},
		{"gcc", "@rsp", ""},
		{"frobcc", "--version", ""},
		{"x86_64-linux-gnu-gcc-12", "-E x.c", "preprocess_only"},
		{"/usr/bin/clang++-15", "-c conftest.cc", "conftest"},
		{"gcc", "-c '' -o ''", ""},
		{"gcc", "-c - -o conftest.o", "conftest"},
		{"gcc", "-std= -c conftest.c", "conftest"},
		{"gcc", "-c conftest.c -o", "conftest"},
		{"gcc", "-c -x c conftest.c -o x.o -I", "conftest"},
		{"gcc", "-c conftest.c -o " + strings.Repeat("d/", 2100) + "x.o", ""},
	} {
		args := cmdline.SplitResponseFile(tc.line)
		got, ok := fastpath.Decide(tc.compiler, args)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("%s %s: C says %q (%v), want %q", tc.compiler, tc.line, got, ok, tc.want)
		}
		checkAgrees(t, tc.compiler, args)
	}
}

func FuzzDecide(f *testing.F) {
	for _, s := range []string{
		"--version", "-c conftest.c", "-o conftest conftest.c", "-E x.c", "-c x.c -o d/cmTC_x.dir/y.o",
		"-c x.c", "-MM -MF x.d x.c", "-S -o - conftest.c", "-c -ofoo/conftest.o x.c", "-c ../CMakeFiles/CMakeTmp/a/b.c",
	} {
		f.Add("gcc", s)
	}
	f.Add("clang++-15", "-c conftest.cc -o x.o")
	f.Fuzz(func(t *testing.T, compiler, line string) {
		if strings.ContainsRune(compiler, 0) || strings.ContainsRune(line, 0) {
			return // C strings
		}
		checkAgrees(t, compiler, strings.Fields(line))
	})
}

func TestKindKnown(t *testing.T) {
	for _, p := range []string{"gcc", "g++", "cc", "c++", "clang", "clang++", "gcc-12", "g++-12.2", "clang-15", "x86_64-linux-gnu-gcc-12",
		"/usr/bin/gcc", "kiln", "gcc-", "gcc-x", "-gcc", "xgcc", "cc1", "", "/", "gcc/", "arm-none-eabi-c++", "clang++-", "gcc-1.2.x"} {
		if got, want := fastpath.KindKnown(p), cmdline.KindOf(p) != cmdline.KindUnknown; got != want {
			t.Errorf("%q: C %v, Go %v", p, got, want)
		}
	}
}

func FuzzClean(f *testing.F) {
	for _, s := range []string{"", ".", "..", "/", "//", "a/../..", "/../x", "a//b/./c/", "../../a/b/../c", "x/.."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if strings.ContainsRune(p, 0) {
			return
		}
		// The C side refuses a path longer than its buffer, whatever it
		// cleans to; any other it cleans as Go does.
		got, ok := fastpath.Clean(p, 4096)
		if len(p) >= 4096 {
			if ok {
				t.Fatalf("Clean of %d bytes fit in 4096", len(p))
			}
			return
		}
		if want := path.Clean(p); !ok || got != want {
			t.Fatalf("Clean(%q): C %q (%v), Go %q", p, got, ok, want)
		}
	})
}

func TestCleanTooLong(t *testing.T) {
	if _, ok := fastpath.Clean(strings.Repeat("a", 20), 10); ok {
		t.Fatal("a path longer than the buffer fit")
	}
	if got, ok := fastpath.Clean("a/b/../../../c", 15); !ok || got != "../c" {
		t.Fatalf("got %q %v", got, ok)
	}
}

func TestResolveAgrees(t *testing.T) {
	// The C side finds the compiler Go's ResolveCompiler finds: the first
	// executable non-directory in an absolute PATH entry that is not kiln
	// itself (through links), relative names made absolute.
	dir := t.TempDir()
	mk := func(rel string, mode os.FileMode) string {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	self := mk("kiln/kiln", 0o755)
	mk("noexec/gcc", 0o644)
	if err := os.MkdirAll(filepath.Join(dir, "isdir/gcc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "links"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(self, filepath.Join(dir, "links/gcc")); err != nil {
		t.Fatal(err)
	}
	real := mk("real/gcc", 0o755)
	mk("later/gcc", 0o755)
	for _, tc := range []struct{ name, pathEnv, self string }{
		{"gcc", strings.Join([]string{"rel", "", dir + "/noexec", dir + "/isdir", dir + "/links", dir + "//real/", dir + "/later"}, ":"), self},
		{"gcc", dir + "/links:" + dir + "/later", ""},
		{"gcc", dir + "/links:" + dir + "/later", self},
		{"gcc", dir + "/none", self},
		{"gcc", "", self},
		{"./sub/../gcc", "", self},
		{real, "", self},
		{dir + "//real/./gcc", "", self},
	} {
		want, err := decide.ResolveCompiler(tc.name, tc.pathEnv, tc.self)
		got, ok := fastpath.Resolve(tc.name, tc.pathEnv, tc.self, mustGetwd(t))
		if ok != (err == nil) || got != want {
			t.Errorf("%s in %q: C %q (%v), Go %q (%v)", tc.name, tc.pathEnv, got, ok, want, err)
		}
	}
}

func mustGetwd(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}

func TestCacheDirAgrees(t *testing.T) {
	for _, tc := range []struct {
		xdg, home       string
		xdgSet, homeSet bool
	}{
		{"", "/root", false, true},
		{"", "/home/u/", false, true},
		{"/x//cache/", "/root", true, true},
		{"", "/root", true, true},
		{"rel", "/root", true, true},
		{"", "", false, false},
	} {
		setOrUnset(t, "XDG_CACHE_HOME", tc.xdg, tc.xdgSet)
		setOrUnset(t, "HOME", tc.home, tc.homeSet)
		got, ok := fastpath.CacheDir(tc.xdg, tc.xdgSet, tc.home, tc.homeSet)
		want := config.CacheDir()
		// Where os.UserCacheDir fails, Go uses the temporary directory and
		// C leaves the call to Go.
		if _, err := os.UserCacheDir(); err != nil {
			if ok {
				t.Errorf("%+v: C %q, Go falls back to %q", tc, got, want)
			}
			continue
		}
		if !ok || got != want {
			t.Errorf("%+v: C %q (%v), Go %q", tc, got, ok, want)
		}
	}
}

func setOrUnset(t *testing.T, k, v string, set bool) {
	t.Setenv(k, v) // restores the old value at the end
	if !set {
		os.Unsetenv(k)
	}
}

func TestJournalLineParses(t *testing.T) {
	line := fastpath.JournalLine("conftest", 123456)
	s := stats.ParseJournal([]byte(line + line))
	if s.Requests != 2 || s.LocalCompiles["conftest"] != 2 || s.WrapperNanos != 246912 {
		t.Fatalf("%q parses as %+v", line, s)
	}
}
