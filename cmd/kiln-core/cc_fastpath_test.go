package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/wrapper/stats"
)

// The kiln command's C fast path (wrapper/fastpath) must do exactly what
// the Go front does for the calls it takes: same output, exit code, files
// and counters. Both run here on the same commands, the Go front with
// KILN_FASTPATH=0; no server is needed for local calls.
func TestFastPathMatchesGoFront(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no gcc")
	}
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "conftest.c"), "#include <stdio.h>\nint main(void) { puts(\"hi\"); return 0; }\n")
	writeFile(t, filepath.Join(src, "bad.c"), "int main(void) { return nope; }\n")
	cases := []struct {
		name   string
		args   []string
		reason string
		out    string // file the command writes, compared too
	}{
		{"Query", []string{"cc", "gcc", "--version"}, "query", ""},
		{"Preprocess", []string{"cc", "gcc", "-E", "-DX=1", "conftest.c"}, "preprocess_only", ""},
		{"Link", []string{"cc", "gcc", "-O2", "-o", "prog", "conftest.c"}, "link", "prog"},
		{"LinkError", []string{"cc", "gcc", "-o", "bad", "bad.c"}, "link", ""},
		{"Conftest", []string{"cc", "gcc", "-c", "-g", "-O2", "conftest.c"}, "conftest", "conftest.o"},
		{"ConftestAbsolute", []string{"cc", "/usr/bin/gcc", "-c", "conftest.c", "-o", "c2.o"}, "conftest", "c2.o"},
	}
	type result struct {
		stdout, stderr string
		code           int
		file           []byte
	}
	// Each command runs in the same directory both ways (-g records it).
	fe := newCCEnv(t, "127.0.0.1:1")
	se := newCCEnv(t, "127.0.0.1:1", "KILN_FASTPATH=0")
	var fast, slow []result
	for _, c := range cases {
		dir := t.TempDir()
		for _, e := range []*ccEnv{fe, se} {
			for _, f := range []string{"conftest.c", "bad.c"} {
				data, _ := os.ReadFile(filepath.Join(src, f))
				writeFile(t, filepath.Join(dir, f), string(data))
			}
			stdout, stderr, code := e.run(dir, c.args...)
			r := result{stdout: stdout, stderr: stderr, code: code}
			if c.out != "" {
				if r.file, _ = os.ReadFile(filepath.Join(dir, c.out)); r.file == nil {
					t.Errorf("%s: no %s written", c.name, c.out)
				}
				os.Remove(filepath.Join(dir, c.out))
			}
			if e == fe {
				fast = append(fast, r)
			} else {
				slow = append(slow, r)
			}
		}
	}
	// The fast path wrote the journal, which only it writes.
	if data, err := os.ReadFile(filepath.Join(fe.cache, "kiln", "cc", stats.JournalName)); err != nil || strings.Count(string(data), "\n") != len(cases) {
		t.Fatalf("fast path journal: %q %v (the fast path did not run?)", data, err)
	}
	if _, err := os.Stat(filepath.Join(se.cache, "kiln", "cc", stats.JournalName)); err == nil {
		t.Fatal("KILN_FASTPATH=0 still wrote the journal")
	}
	for i, c := range cases {
		f, s := fast[i], slow[i]
		if f.stdout != s.stdout || f.stderr != s.stderr || f.code != s.code || !bytes.Equal(f.file, s.file) {
			t.Errorf("%s: fast path %s, Go front %s (files equal: %v)", c.name, summary(f.stdout, f.stderr, f.code), summary(s.stdout, s.stderr, s.code), bytes.Equal(f.file, s.file))
		}
	}
	if fast[3].code == 0 || fast[0].code != 0 {
		t.Fatalf("exit codes not kept: %d %d", fast[0].code, fast[3].code)
	}
	fs, ss := fe.stats(), se.stats()
	want := map[string]int64{}
	for _, c := range cases {
		want[c.reason]++
	}
	if !reflect.DeepEqual(fs.LocalCompiles, want) || !reflect.DeepEqual(ss.LocalCompiles, want) || fs.Requests != int64(len(cases)) || ss.Requests != fs.Requests {
		t.Fatalf("counters: fast path %+v, Go front %+v, want %v", fs, ss, want)
	}
	if fs.WrapperNanos <= 0 {
		t.Fatalf("fast path counted no time: %+v", fs)
	}
}

func writeFile(t *testing.T, p, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func summary(stdout, stderr string, code int) string {
	cut := func(s string) string {
		if len(s) > 200 {
			return s[:200] + "..."
		}
		return s
	}
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", code, cut(stdout), cut(stderr))
}

func TestFastPathLeavesFailuresToGo(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no gcc")
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "x.c"), "int x;\n")
	// A cache directory that cannot exist: the fast path cannot write its
	// journal and leaves the call to Go, which logs that it could not
	// count it and compiles anyway.
	log := filepath.Join(t.TempDir(), "kiln.log")
	e := newCCEnv(t, "127.0.0.1:1", "KILN_LOG="+log)
	e.env = append(e.env, "XDG_CACHE_HOME=/dev/null/cache")
	stdout, stderr, code := e.run(dir, "cc", "gcc", "-E", "x.c")
	if code != 0 || !strings.Contains(stdout, "int x;") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if data, _ := os.ReadFile(log); !strings.Contains(string(data), "stats") {
		t.Fatalf("the Go front did not log the stats failure: %q", data)
	}
	// A compiler that is not in PATH: the Go front's message and exit.
	e = newCCEnv(t, "127.0.0.1:1")
	_, stderr, code = e.run(dir, "cc", "gcc-0-not-installed", "--version")
	if code == 0 || !strings.Contains(stderr, "not found") {
		t.Fatalf("missing compiler: exit %d, stderr %q", code, stderr)
	}
}

func TestFastPathIgnoresConfig(t *testing.T) {
	// Local decisions need no configuration, so a broken client.yaml does
	// not stop a configure script's probes; a remote candidate still
	// reports it.
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no gcc")
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "x.c"), "int x;\n")
	e := newCCEnv(t, "127.0.0.1:1")
	cfgDir := t.TempDir()
	writeFile(t, filepath.Join(cfgDir, "kiln", "client.yaml"), "sever: typo\n")
	e.env = append(e.env, "XDG_CONFIG_HOME="+cfgDir)
	if _, stderr, code := e.run(dir, "cc", "gcc", "--version"); code != 0 {
		t.Fatalf("query with a broken config: exit %d %s", code, stderr)
	}
	if _, stderr, code := e.run(dir, "cc", "gcc", "-c", "x.c"); code == 0 || !strings.Contains(stderr, "sever") {
		t.Fatalf("remote candidate with a broken config: exit %d, stderr %q", code, stderr)
	}
}

func TestFastPathThroughDaemon(t *testing.T) {
	// Once the daemon runs, the C fast path sends it every compile it
	// cannot decide itself, without starting the Go runtime: with
	// GODEBUG=inittrace=1 a Go program prints its package initialisation,
	// so an empty stderr shows that no Go front ran.
	f := newRemoteFixture(t)
	e, dir, obj, dep, args, wantObj, wantDep := f.env, f.dir, f.obj, f.dep, f.args, f.wantObj, f.wantDep
	compile := func(extra []string, args ...string) string {
		t.Helper()
		os.Remove(filepath.Join(dir, obj))
		c := &ccEnv{t: t, cache: e.cache, env: append(append([]string(nil), e.env...), extra...)}
		_, stderr, code := c.run(dir, append([]string{"cc", "gcc"}, args...)...)
		if code != 0 {
			t.Fatalf("kiln cc: exit %d, stderr %q", code, stderr)
		}
		return stderr
	}
	compile(nil, args...) // the Go front starts the daemon
	trace := []string{"GODEBUG=inittrace=1"}
	if stderr := compile(append(trace, "KILN_FASTPATH=0"), args...); !strings.Contains(stderr, "init runtime") {
		t.Fatalf("the Go front printed no init trace: %q", stderr)
	}
	if stderr := compile(trace, args...); stderr != "" {
		t.Fatalf("a Go program ran: %q", stderr)
	}
	if gotObj, gotDep := readOutputs(t, dir, obj, dep); !bytes.Equal(gotObj, wantObj) || !bytes.Equal(gotDep, wantDep) {
		t.Fatal("outputs differ from gcc's")
	}
	// A compile the daemon leaves local (Go's parser decides it) runs the
	// compiler from the C side too.
	if stderr := compile(trace, append([]string{"-march=native"}, args...)...); stderr != "" {
		t.Fatalf("local decision: a Go program ran: %q", stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, obj)); err != nil {
		t.Fatalf("no object from the local compile: %v", err)
	}
	s := e.stats()
	if s.CacheHits != 2 || s.CacheMisses != 1 || s.LocalCompiles["native_arch"] != 1 || s.Requests != 4 {
		t.Fatalf("stats %+v", s)
	}
}
