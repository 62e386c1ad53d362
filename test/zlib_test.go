package test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/wrapper/stats"
)

// debsrcEnv names the directory holding Debian source packages unpacked by
// test/debsrc/fetch.sh (default ~/.cache/kiln-debsrc, where .ci/run puts them).
const debsrcEnv = "KILN_DEBSRC"

// debianSource returns the unpacked source of pkg, skipping t when it is absent (failing
// under CI=true, whose .ci/run fetches it).
func debianSource(t *testing.T, pkg string) string {
	t.Helper()
	dir := os.Getenv(debsrcEnv)
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "kiln-debsrc")
	}
	src := filepath.Join(dir, pkg)
	if _, err := os.Stat(filepath.Join(src, "configure")); err != nil {
		msg := "Debian source of " + pkg + " not found in " + dir + " (fetch it with test/debsrc/fetch.sh, as .ci/run does)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return src
}

// project is a copy of a source tree built with some environment.
type project struct {
	t   *testing.T
	dir string
	env []string
}

func newProject(t *testing.T, src string, env ...string) *project {
	t.Helper()
	dir := filepath.Join(t.TempDir(), filepath.Base(src))
	if out, err := exec.Command("cp", "-a", src, dir).CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v %s", src, err, out)
	}
	return &project{t: t, dir: dir, env: append(os.Environ(), env...)}
}

// run runs a command in the project and returns its combined output.
func (p *project) run(name string, args ...string) string {
	p.t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env = p.dir, p.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		p.t.Fatalf("%s %s in %s: %v\n%s", name, strings.Join(args, " "), p.dir, err, out)
	}
	return string(out)
}

// objects returns the object files of the build (zlib: .o static, .lo PIC) by name.
func (p *project) objects() map[string][]byte {
	p.t.Helper()
	objs := map[string][]byte{}
	for _, pat := range []string{"*.o", "*.lo"} {
		names, _ := filepath.Glob(filepath.Join(p.dir, pat))
		for _, n := range names {
			data, err := os.ReadFile(n)
			if err != nil {
				p.t.Fatal(err)
			}
			objs[filepath.Base(n)] = data
		}
	}
	return objs
}

// kilnStats reads kiln cc's counters in the project's environment.
func (p *project) kilnStats(kiln string) stats.Stats {
	p.t.Helper()
	var s stats.Stats
	if err := json.Unmarshal([]byte(p.run(kiln, "stats", "--json")), &s); err != nil {
		p.t.Fatal(err)
	}
	return s
}

func sum(m map[string]int64) (n int64) {
	for _, v := range m {
		n += v
	}
	return n
}

// TestZlibThroughKilnCC builds Debian's zlib (a project nobody here wrote, fetched by
// .ci/run with apt-get source) with `make CC="kiln cc gcc" -j4` against `kiln server` with
// two local worker slots and Debian's CFLAGS (-g -O2), and checks what a user relies on:
// every object file is byte-identical to a plain local build's, debug information included, zlib's own tests pass, and after make clean
// the rebuild is 100% cache hits.
func TestZlibThroughKilnCC(t *testing.T) {
	requireRootAndGCC(t)
	src := debianSource(t, "zlib")
	kiln := kilnBinary(t)
	s := startServer(t, "--store", "memory", "--workers", "2")

	// Debian's flags: with -g, object identity includes the DWARF columns
	// and the build directory, so both builds happen in the same one.
	cc := kiln + " cc gcc"
	k := newProject(t, src, "KILN_SERVER="+s.GRPCURL(), "KILN_FORCE_REMOTE=1", "CFLAGS=-g -O2",
		"XDG_CACHE_HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
	k.run("env", "CC=gcc", "./configure")
	k.run("make", "-j4")
	want := k.objects()
	if len(want) < 30 {
		t.Fatalf("the plain build made %d object files, want zlib's 34", len(want))
	}
	k.run("make", "distclean")

	k.run("env", "CC="+cc, "./configure")
	k.run("make", "CC="+cc, "-j4")
	first := k.kilnStats(kiln)
	requireSameObjects(t, want, k.objects())
	if out := k.run("make", "CC="+cc, "test"); !strings.Contains(out, "*** zlib test OK ***") || !strings.Contains(out, "*** zlib shared test OK ***") {
		t.Fatalf("zlib's tests did not pass:\n%s", out)
	}
	if first.Errors != 0 || len(first.Fallbacks) != 0 || sum(first.RemoteCompiles) != int64(len(want)) || first.CacheMisses != int64(len(want)) {
		t.Fatalf("first build: want %d remote compiles, all misses, no fallback; stats %+v", len(want), first)
	}
	if first.LocalCompiles["conftest"] == 0 || first.LocalCompiles["link"] == 0 {
		t.Fatalf("configure's tests and the links should have run locally; stats %+v", first)
	}

	k.run(kiln, "stats", "--zero")
	k.run("make", "clean")
	if n := len(k.objects()); n != 0 {
		t.Fatalf("make clean left %d objects", n)
	}
	k.run("make", "CC="+cc, "-j4")
	again := k.kilnStats(kiln)
	requireSameObjects(t, want, k.objects())
	if again.CacheHits != int64(len(want)) || again.CacheMisses != 0 || sum(again.RemoteCompiles) != 0 || len(again.Fallbacks) != 0 {
		t.Fatalf("rebuild: want %d cache hits and nothing else remote; stats %+v", len(want), again)
	}
	// Nothing changed since the first build: direct mode finds every one
	// without running the preprocessor.
	if again.DirectHits != int64(len(want)) {
		t.Fatalf("rebuild: %d of %d hits found by direct mode", again.DirectHits, len(want))
	}
}

// TestZlibToolchainUploadedOnce builds zlib with make -j16 against an empty server: the 16
// compiles that start together all need the toolchain (~80 MB), which must go up once.
func TestZlibToolchainUploadedOnce(t *testing.T) {
	requireRootAndGCC(t)
	src := debianSource(t, "zlib")
	kiln := kilnBinary(t)

	// What one compile sends to an empty server: the toolchain plus one source.
	one := newProject(t, src, "XDG_CACHE_HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir(), "KILN_FORCE_REMOTE=1",
		"KILN_SERVER="+startServer(t, "--store", "memory", "--workers", "1").GRPCURL())
	one.run(kiln, "cc", "gcc", "-O3", "-c", "adler32.c")
	single := one.kilnStats(kiln).BytesUp

	s := startServer(t, "--store", "memory", "--workers", "2")
	cc := kiln + " cc gcc"
	k := newProject(t, src, "KILN_SERVER="+s.GRPCURL(), "KILN_FORCE_REMOTE=1", "CC="+cc,
		"XDG_CACHE_HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
	k.run("./configure")
	k.run("make", "CC="+cc, "-j16")
	st := k.kilnStats(kiln)
	if sum(st.RemoteCompiles) == 0 || st.Errors != 0 || len(st.Fallbacks) != 0 {
		t.Fatalf("stats %+v", st)
	}
	// The sources are small next to the toolchain; a second upload would double it.
	if st.BytesUp > single*3/2 {
		t.Fatalf("make -j16 sent %d bytes; one compile sends %d: the toolchain went up more than once", st.BytesUp, single)
	}
	t.Logf("one compile sent %d bytes, the -j16 build %d", single, st.BytesUp)
}

func requireRootAndGCC(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no gcc")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	if os.Getuid() != 0 {
		t.Skip("the hermetic sandbox needs root here")
	}
}

func requireSameObjects(t *testing.T, want, got map[string][]byte) {
	t.Helper()
	var names []string
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if g, ok := got[n]; !ok {
			t.Errorf("%s: missing from the kiln build", n)
		} else if !bytes.Equal(g, want[n]) {
			t.Errorf("%s: %d bytes through kiln, %d plain: not identical", n, len(g), len(want[n]))
		}
	}
	if len(got) != len(want) {
		t.Errorf("the kiln build has %d objects, the plain one %d", len(got), len(want))
	}
}
