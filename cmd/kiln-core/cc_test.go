package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-build/kiln/wrapper/stats"
)

// These tests run the real kiln binary as `kiln cc gcc ...` against a real
// `kiln server` (memory store, in-process sandboxed worker, hermetic mode)
// over loopback, and compare with plain gcc.

var (
	buildOnce sync.Once
	kilnBin   string
	buildErr  error
)

// kiln builds the binary once per test run.
func kiln(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kiln-cc-test-")
		if err != nil {
			buildErr = err
			return
		}
		// Both binaries, as installed: kiln decides, kiln-core does the rest.
		kilnBin = filepath.Join(dir, "kiln")
		out, err := exec.Command("go", "build", "-o", dir+"/", "github.com/kiln-build/kiln/cmd/kiln", "github.com/kiln-build/kiln/cmd/kiln-core").CombinedOutput()
		if err != nil {
			buildErr = err
			t.Logf("%s", out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return kilnBin
}

func needGCC(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no gcc")
	}
	if os.Getuid() != 0 {
		t.Skip("the hermetic sandbox needs root here")
	}
}

// startKilnServer starts `kiln server` and returns its grpc address. extra
// flags come last, so they override the defaults (--workers 0).
func startKilnServer(t *testing.T, extra ...string) string {
	t.Helper()
	args := []string{"server", "--store", "memory", "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--data", t.TempDir(), "--workers", "2"}
	cmd := exec.Command(kiln(t), append(args, extra...)...)
	out, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`kiln server started.* grpc=(\S+)`)
		sc := bufio.NewScanner(out)
		sent := false
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil && !sent {
				addr <- m[1]
				sent = true
			}
		}
	}()
	select {
	case a := <-addr:
		return a
	case <-time.After(20 * time.Second):
		t.Fatal("server did not start")
	}
	return ""
}

// ccEnv is a wrapper environment: its own cache (stats, toolchains) and
// configuration directories.
type ccEnv struct {
	t     *testing.T
	cache string
	env   []string
}

func newCCEnv(t *testing.T, server string, extra ...string) *ccEnv {
	e := &ccEnv{t: t, cache: t.TempDir()}
	e.env = append(os.Environ(), "XDG_CACHE_HOME="+e.cache, "XDG_CONFIG_HOME="+t.TempDir(), "KILN_SERVER=grpc://"+server)
	e.env = append(e.env, extra...)
	return e
}

// run runs kiln with args in dir; it returns stdout, stderr and the exit code.
func (e *ccEnv) run(dir string, args ...string) (string, string, int) {
	e.t.Helper()
	cmd := exec.Command(kiln(e.t), args...)
	cmd.Dir, cmd.Env = dir, e.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

func (e *ccEnv) stats() stats.Stats {
	e.t.Helper()
	out, _, code := e.run("/", "stats", "--json")
	var s stats.Stats
	if code != 0 || json.Unmarshal([]byte(out), &s) != nil {
		e.t.Fatalf("kiln stats: %d %s", code, out)
	}
	return s
}

// project writes a small multi-file C project into a directory whose
// name has a space in it, and returns it.
func project(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "my project")
	writeProject(t, dir)
	return dir
}

// writeProject writes project's files into dir.
func writeProject(t *testing.T, dir string) {
	files := map[string]string{
		"inc/util.h": "#pragma once\n#define SQUARE(x) ((x) * (x))\nint add(int, int);\n",
		"src/a.c":    "#include \"util.h\"\nint add(int a, int b) { return SQUARE(a) + b; }\n",
		"src/b.c":    "#include <stdio.h>\n#include \"util.h\"\nint main(void) { printf(\"%d\\n\", add(3, 4)); return 0; }\n",
		"src/c d.c":  "#include <string.h>\nsize_t n(const char *s) { return strlen(s) * 2; }\n",
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(dir, "obj", "local"), 0o755)
}

var sources = []string{"a", "b", "c d"}

func compileArgs(dir, src, out string, flags ...string) []string {
	args := append([]string{"-Iinc", "-MD"}, flags...)
	return append(args, "-c", filepath.Join("src", src+".c"), "-o", out)
}

func TestCCRemote(t *testing.T) {
	needGCC(t)
	addr := startKilnServer(t)
	e := newCCEnv(t, addr)
	dir := project(t)
	// Plain -g (DWARF columns) goes by -fdirectives-only; the others by
	// full preprocessing.
	// The last set is the second build's.
	flagSets := [][]string{{"-O2"}, {"-O2", "-g"}, {"-g", "-O0", "-DEXTRA=\"a b\""}, {"-O2", "-g", "-gno-column-info"}}
	for _, flags := range flagSets {
		for _, src := range sources {
			obj := filepath.Join("obj", src+".o")
			_, stderr, code := e.run(dir, append([]string{"cc", "gcc"}, compileArgs(dir, src, obj, flags...)...)...)
			if code != 0 || stderr != "" {
				t.Fatalf("kiln cc %s: exit %d, stderr %q", src, code, stderr)
			}
			// The same command run by gcc itself, in the same place.
			remoteObj, _ := os.ReadFile(filepath.Join(dir, obj))
			remoteDep, _ := os.ReadFile(filepath.Join(dir, "obj", src+".d"))
			cmd := exec.Command("gcc", compileArgs(dir, src, obj, flags...)...)
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("gcc: %v %s", err, out)
			}
			localObj, _ := os.ReadFile(filepath.Join(dir, obj))
			localDep, _ := os.ReadFile(filepath.Join(dir, "obj", src+".d"))
			if len(remoteObj) == 0 || !bytes.Equal(remoteObj, localObj) {
				t.Errorf("%v %s: remote object (%d bytes) differs from the local one (%d bytes)", flags, src, len(remoteObj), len(localObj))
			}
			if len(remoteDep) == 0 || !bytes.Equal(remoteDep, localDep) {
				t.Errorf("%s: dependency file\n%s\nwant\n%s", src, remoteDep, localDep)
			}
			os.WriteFile(filepath.Join(dir, "obj", "local", src+".o"), localObj, 0o644)
		}
	}
	s := e.stats()
	if n := int64(len(flagSets) * len(sources)); s.CacheMisses != n || s.RemoteCompiles["local"] != n || s.CacheHits != 0 {
		t.Fatalf("first build stats: %+v", s)
	}
	// The second build is all cache hits, with the same outputs.
	os.RemoveAll(filepath.Join(dir, "obj", "a.o"))
	for _, src := range sources {
		obj := filepath.Join("obj", src+".o")
		if _, stderr, code := e.run(dir, append([]string{"cc", "gcc"}, compileArgs(dir, src, obj, "-O2", "-g", "-gno-column-info")...)...); code != 0 {
			t.Fatalf("second build: %d %s", code, stderr)
		}
	}
	if s := e.stats(); s.CacheHits != 3 || s.CacheMisses != int64(len(flagSets)*len(sources)) {
		t.Fatalf("second build stats: %+v", s)
	}
	a, _ := os.ReadFile(filepath.Join(dir, "obj", "a.o"))
	al, _ := os.ReadFile(filepath.Join(dir, "obj", "local", "a.o"))
	if !bytes.Equal(a, al) {
		t.Fatal("object from the cache differs")
	}

	t.Run("LinkIsLocal", func(t *testing.T) {
		// Linking runs gcc itself and is counted by reason.
		_, stderr, code := e.run(dir, "cc", "gcc", "obj/a.o", "obj/b.o", "-o", "prog")
		if code != 0 {
			t.Fatalf("link: %d %s", code, stderr)
		}
		out, err := exec.Command(filepath.Join(dir, "prog")).Output()
		if err != nil || string(out) != "13\n" {
			t.Fatalf("prog: %q %v", out, err)
		}
		if s := e.stats(); s.LocalCompiles["link"] != 1 {
			t.Fatalf("stats %+v", s)
		}
	})
	t.Run("CompileError", func(t *testing.T) {
		// A compile error on the worker is the compiler's: same message, same exit code.
		os.WriteFile(filepath.Join(dir, "src", "bad.c"), []byte("int f(void) { return x; }\n"), 0o644)
		_, stderr, code := e.run(dir, "cc", "gcc", "-c", "src/bad.c", "-o", "obj/bad.o")
		cmd := exec.Command("gcc", "-c", "src/bad.c", "-o", "obj/local/bad.o")
		cmd.Dir = dir
		want, _ := cmd.CombinedOutput()
		if code != 1 || stderr != string(want) {
			t.Fatalf("exit %d, stderr %q, want 1, %q", code, stderr, want)
		}
		if s := e.stats(); s.RemoteFailedCompiles != 1 {
			t.Fatalf("stats %+v", s)
		}
	})
	t.Run("OutputDirectoryMissing", func(t *testing.T) {
		// Same error as gcc's own.
		_, stderr, code := e.run(dir, "cc", "gcc", "-c", "src/a.c", "-Iinc", "-o", "nodir/a.o")
		cmd := exec.Command("gcc", "-c", "src/a.c", "-Iinc", "-o", "nodir/a.o")
		cmd.Dir = dir
		want, err := cmd.CombinedOutput()
		if code == 0 || err == nil || stderr != string(want) {
			t.Fatalf("exit %d, stderr %q, want %q", code, stderr, want)
		}
	})
}

func TestCCFallback(t *testing.T) {
	needGCC(t)
	// A port nobody listens on.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	down := l.Addr().String()
	l.Close()
	dir := project(t)

	t.Run("ServerDown", func(t *testing.T) {
		// Local compile, correct output, one warning for two compiles.
		e := newCCEnv(t, down)
		var warnings int
		for _, src := range []string{"a", "b"} {
			_, stderr, code := e.run(dir, append([]string{"cc", "gcc"}, compileArgs(dir, src, "obj/"+src+".o", "-O2")...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			warnings += strings.Count(stderr, "kiln: warning")
		}
		if warnings != 1 {
			t.Fatalf("%d warnings, want 1", warnings)
		}
		cmd := exec.Command("gcc", compileArgs(dir, "a", "obj/local/a.o", "-O2")...)
		cmd.Dir = dir
		cmd.Run()
		a, _ := os.ReadFile(filepath.Join(dir, "obj", "a.o"))
		al, _ := os.ReadFile(filepath.Join(dir, "obj", "local", "a.o"))
		if len(a) == 0 || !bytes.Equal(a, al) {
			t.Fatal("fallback object differs")
		}
		if s := e.stats(); s.Fallbacks["unavailable"] != 2 {
			t.Fatalf("stats %+v", s)
		}
	})
	t.Run("ForceRemote", func(t *testing.T) {
		// With force_remote, a server that is down is an error.
		e := newCCEnv(t, down, "KILN_FORCE_REMOTE=1")
		_, stderr, code := e.run(dir, "cc", "gcc", "-Iinc", "-c", "src/a.c", "-o", "obj/f.o")
		if code == 0 || !strings.Contains(stderr, "force_remote is set") {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
		if _, err := os.Stat(filepath.Join(dir, "obj", "f.o")); err == nil {
			t.Fatal("an object was written")
		}
	})
	t.Run("SilentServer", func(t *testing.T) {
		// A listener that accepts and never speaks: fallback within the connect timeout.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close()
			}
		}()
		e := newCCEnv(t, l.Addr().String(), "KILN_CONNECT_TIMEOUT=1s")
		start := time.Now()
		_, stderr, code := e.run(dir, "cc", "gcc", "-Iinc", "-c", "src/a.c", "-o", "obj/s.o")
		if code != 0 || !strings.Contains(stderr, "kiln: warning") {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
		if el := time.Since(start); el > 10*time.Second {
			t.Fatalf("took %v", el)
		}
	})
	t.Run("Conftest", func(t *testing.T) {
		// An autoconf probe is local without touching the (down) server: no warning.
		e := newCCEnv(t, down)
		os.WriteFile(filepath.Join(dir, "conftest.c"), []byte("int main(void){return 0;}\n"), 0o644)
		_, stderr, code := e.run(dir, "cc", "gcc", "-c", "conftest.c", "-o", "conftest.o")
		if code != 0 || stderr != "" {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
		if s := e.stats(); s.LocalCompiles["conftest"] != 1 || len(s.Fallbacks) != 0 {
			t.Fatalf("stats %+v", s)
		}
	})
}
