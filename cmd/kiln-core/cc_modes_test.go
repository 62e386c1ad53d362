package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// These tests run `kiln cc` end to end (see cc_test.go) in its other
// modes: base_dir, install-bins links and cache-only.

// compileLocally runs gcc with args in dir, as a build would without kiln,
// and returns the object at obj and the dependency file at dep (both
// relative to dir).
func compileLocally(t *testing.T, dir, obj, dep string, args ...string) ([]byte, []byte) {
	t.Helper()
	cmd := exec.Command("/usr/bin/gcc", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gcc %q: %v %s", args, err, out)
	}
	o, err := os.ReadFile(filepath.Join(dir, obj))
	if err != nil {
		t.Fatal(err)
	}
	d, _ := os.ReadFile(filepath.Join(dir, dep))
	return o, d
}

// readOutputs returns the object and the dependency file kiln wrote.
func readOutputs(t *testing.T, dir, obj, dep string) ([]byte, []byte) {
	t.Helper()
	o, err := os.ReadFile(filepath.Join(dir, obj))
	if err != nil {
		t.Fatal(err)
	}
	d, err := os.ReadFile(filepath.Join(dir, dep))
	if err != nil {
		t.Fatal(err)
	}
	return o, d
}

func TestCCBaseDir(t *testing.T) {
	needGCC(t)
	addr := startKilnServer(t)
	base := t.TempDir()
	// Two checkouts of one project at different depths under base_dir.
	first := filepath.Join(base, "one", "my project")
	second := filepath.Join(base, "two", "deeper", "still", "my project")
	writeProject(t, first)
	writeProject(t, second)
	e := newCCEnv(t, addr, "KILN_BASE_DIR="+base)

	// build compiles every source of dir through kiln, naming the source
	// and the include directory by absolute paths (which base_dir makes
	// relative), and checks each object and dependency file against gcc's
	// own compile of the command Rebase makes: relative paths, with
	// -fdebug-prefix-map=BASE=. first (see cmdline.Rebase).
	build := func(t *testing.T, dir string, flags ...string) {
		t.Helper()
		for _, src := range sources {
			obj, dep := filepath.Join("obj", src+".o"), filepath.Join("obj", src+".d")
			abs := append(append([]string{"-I" + filepath.Join(dir, "inc"), "-MD"}, flags...), "-c", filepath.Join(dir, "src", src+".c"), "-o", obj)
			_, stderr, code := e.run(dir, append([]string{"cc", "gcc"}, abs...)...)
			if code != 0 || stderr != "" {
				t.Fatalf("kiln cc %s: exit %d, stderr %q", src, code, stderr)
			}
			gotObj, gotDep := readOutputs(t, dir, obj, dep)
			rebased := compileArgs(dir, src, obj, flags...)
			wantObj, wantDep := compileLocally(t, dir, obj, dep, append([]string{"-fdebug-prefix-map=" + base + "=."}, rebased...)...)
			if !bytes.Equal(gotObj, wantObj) {
				t.Errorf("%s %v %s: object (%d bytes) differs from gcc's (%d bytes)", dir, flags, src, len(gotObj), len(wantObj))
			}
			if !bytes.Equal(gotDep, wantDep) {
				t.Errorf("%s %v %s: dependency file\n%s\nwant\n%s", dir, flags, src, gotDep, wantDep)
			}
		}
	}

	t.Run("NoDebugInfoIsSharedAcrossCheckouts", func(t *testing.T) {
		// The first checkout fills the cache; every object of the second is a hit.
		build(t, first, "-O2")
		if s := e.stats(); s.CacheMisses != 3 || s.CacheHits != 0 {
			t.Fatalf("first checkout stats: %+v", s)
		}
		build(t, second, "-O2")
		if s := e.stats(); s.CacheMisses != 3 || s.CacheHits != 3 || s.RemoteCompiles["local"] != 3 {
			t.Fatalf("second checkout stats: %+v", s)
		}
	})
	t.Run("DebugInfoMatchesLocalCompile", func(t *testing.T) {
		// Under -g the compilation directory relative to base_dir
		// (./one/my project, ./two/deeper/still/my project) is in the
		// object, so checkouts at different depths do not share entries;
		// each object still equals gcc's with the prefix map.
		build(t, first, "-O2", "-g", "-gno-column-info")
		build(t, second, "-O2", "-g", "-gno-column-info")
		if s := e.stats(); len(s.Fallbacks) != 0 || s.Errors != 0 {
			t.Fatalf("stats %+v", s)
		}
	})
}

func TestCCInstallBins(t *testing.T) {
	needGCC(t)
	addr := startKilnServer(t)
	e := newCCEnv(t, addr)
	bin := filepath.Join(t.TempDir(), "bin")
	if out, stderr, code := e.run("/", "install-bins", bin); code != 0 {
		t.Fatalf("install-bins: exit %d, %s %s", code, out, stderr)
	}
	self, err := filepath.EvalSymlinks(kiln(t))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"gcc", "g++", "cc", "c++", "clang", "clang++"}
	for _, versioned := range []string{"gcc-12", "g++-12"} {
		if _, err := exec.LookPath(versioned); err == nil {
			want = append(want, versioned)
		}
	}
	for _, n := range want {
		if target, err := os.Readlink(filepath.Join(bin, n)); err != nil || target != self {
			t.Errorf("%s: link to %q (%v), want %q", n, target, err, self)
		}
	}
	// gcc-ar-12 is not a compiler, and has no link.
	if _, err := os.Lstat(filepath.Join(bin, "gcc-ar-12")); err == nil {
		t.Error("gcc-ar-12 was linked")
	}

	dir := project(t)
	wantObj, _ := compileLocally(t, dir, "obj/local/a.o", "obj/local/a.d", "-Iinc", "-O2", "-c", "src/a.c", "-o", "obj/local/a.o")
	// viaPath runs a shell command with PATH=pathPrefix:$PATH, as make would.
	viaPath := func(t *testing.T, pathPrefix, command string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a link that runs itself would never end
		defer cancel()
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
		cmd.Dir = dir
		cmd.Env = append(append([]string{}, e.env...), "PATH="+pathPrefix+":"+os.Getenv("PATH"))
		if out, err := cmd.CombinedOutput(); err != nil || len(out) != 0 {
			t.Fatalf("%s: %v %q", command, err, out)
		}
	}
	for _, tc := range []struct {
		name, pathPrefix, compiler string
	}{
		{"gcc", bin, "gcc"},
		{"DirTwiceInPath", bin + ":" + bin, "gcc"},     // the link skips every entry that is itself
		{"Versioned", bin, "gcc-12"},                   // a versioned link finds the versioned compiler
		{"CCIsGCC", bin + ":" + bin + ":" + bin, "cc"}, // cc is /usr/bin/cc, gcc on Debian
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := exec.LookPath(tc.compiler); err != nil {
				t.Skipf("no %s", tc.compiler)
			}
			before := e.stats()
			os.Remove(filepath.Join(dir, "obj", "a.o"))
			viaPath(t, tc.pathPrefix, tc.compiler+" -Iinc -O2 -c src/a.c -o obj/a.o")
			after := e.stats()
			if after.Requests != before.Requests+1 || after.CacheHits+after.CacheMisses != before.CacheHits+before.CacheMisses+1 {
				t.Fatalf("the compile did not go through kiln: before %+v, after %+v", before, after)
			}
			got, err := os.ReadFile(filepath.Join(dir, "obj", "a.o"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, wantObj) {
				t.Fatalf("object (%d bytes) differs from /usr/bin/gcc's (%d bytes)", len(got), len(wantObj))
			}
		})
	}
}

func TestCCCacheOnly(t *testing.T) {
	needGCC(t)
	// No workers: nothing can execute remotely, so a hit can only be a
	// result a wrapper stored.
	addr := startKilnServer(t, "--workers", "0")
	dir := project(t)
	flags := []string{"-O2", "-g", "-gno-column-info"}
	obj, dep := filepath.Join("obj", "a.o"), filepath.Join("obj", "a.d")
	args := append([]string{"cc", "gcc"}, compileArgs(dir, "a", obj, flags...)...)
	wantObj, wantDep := compileLocally(t, dir, obj, dep, compileArgs(dir, "a", obj, flags...)...)

	// compile runs kiln cc in env e and checks its outputs against gcc's.
	compile := func(t *testing.T, e *ccEnv) {
		t.Helper()
		os.Remove(filepath.Join(dir, obj))
		os.Remove(filepath.Join(dir, dep))
		_, stderr, code := e.run(dir, args...)
		if code != 0 || stderr != "" {
			t.Fatalf("kiln cc: exit %d, stderr %q", code, stderr)
		}
		gotObj, gotDep := readOutputs(t, dir, obj, dep)
		if !bytes.Equal(gotObj, wantObj) || !bytes.Equal(gotDep, wantDep) {
			t.Fatalf("outputs differ from gcc's: object %d bytes, want %d; dependency file\n%s\nwant\n%s", len(gotObj), len(wantObj), gotDep, wantDep)
		}
	}

	t.Run("MissCompilesLocallyAndStores", func(t *testing.T) {
		e := newCCEnv(t, addr, "KILN_CACHE_ONLY=1")
		compile(t, e)
		if s := e.stats(); s.CacheMisses != 1 || s.LocalCompiles["cache_only"] != 1 || s.CacheUploads != 1 || len(s.RemoteCompiles) != 0 || len(s.Fallbacks) != 0 {
			t.Fatalf("stats %+v", s)
		}
	})
	t.Run("AnotherWrapperHits", func(t *testing.T) {
		// A second wrapper with its own cache directory gets the stored result.
		e := newCCEnv(t, addr, "KILN_CACHE_ONLY=1")
		compile(t, e)
		if s := e.stats(); s.CacheHits != 1 || s.CacheMisses != 0 || len(s.LocalCompiles) != 0 || s.CacheUploads != 0 {
			t.Fatalf("stats %+v", s)
		}
	})
	t.Run("RemoteModeHits", func(t *testing.T) {
		// The stored entry is the remote action's: a wrapper that is not
		// cache-only (and may not fall back) hits it too.
		e := newCCEnv(t, addr, "KILN_FORCE_REMOTE=1")
		compile(t, e)
		if s := e.stats(); s.CacheHits != 1 || s.CacheMisses != 0 || len(s.LocalCompiles) != 0 {
			t.Fatalf("stats %+v", s)
		}
	})
	t.Run("CompileErrorIsNotStored", func(t *testing.T) {
		// A failed compile keeps gcc's message and exit code, and is not cached.
		e := newCCEnv(t, addr, "KILN_CACHE_ONLY=1")
		os.WriteFile(filepath.Join(dir, "src", "bad.c"), []byte("int f(void) { return x; }\n"), 0o644)
		cmd := exec.Command("gcc", "-c", "src/bad.c", "-o", "obj/local/bad.o")
		cmd.Dir = dir
		want, _ := cmd.CombinedOutput()
		for i := 0; i < 2; i++ {
			_, stderr, code := e.run(dir, "cc", "gcc", "-c", "src/bad.c", "-o", "obj/bad.o")
			if code != 1 || stderr != string(want) {
				t.Fatalf("exit %d, stderr %q, want 1, %q", code, stderr, want)
			}
		}
		if s := e.stats(); s.CacheMisses != 2 || s.CacheHits != 0 || s.CacheUploads != 0 {
			t.Fatalf("stats %+v", s)
		}
	})
}
