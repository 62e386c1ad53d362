package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCCDirectMode checks the hits found without preprocessing: they give
// gcc's object and dependency file, and any change to what the
// preprocessor read (a header's contents, a define) is noticed.
func TestCCDirectMode(t *testing.T) {
	needGCC(t)
	addr := startKilnServer(t)
	dir := project(t)
	e := newCCEnv(t, addr, "KILN_FORCE_REMOTE=1")
	obj, dep := filepath.Join("obj", "b.o"), filepath.Join("obj", "b.d")
	header := filepath.Join(dir, "inc", "util.h")
	orig, _ := os.ReadFile(header)
	defer os.WriteFile(header, orig, 0o644)

	// step compiles src/b.c with flags through kiln, compares with gcc and
	// checks how many hits and direct hits it added.
	step := func(t *testing.T, hits, direct int64, flags ...string) {
		t.Helper()
		args := compileArgs(dir, "b", obj, flags...)
		wantObj, wantDep := compileLocally(t, dir, obj, dep, args...)
		os.Remove(filepath.Join(dir, obj))
		os.Remove(filepath.Join(dir, dep))
		before := e.stats()
		if _, stderr, code := e.run(dir, append([]string{"cc", "gcc"}, args...)...); code != 0 || stderr != "" {
			t.Fatalf("kiln cc: exit %d, stderr %q", code, stderr)
		}
		gotObj, gotDep := readOutputs(t, dir, obj, dep)
		if !bytes.Equal(gotObj, wantObj) || !bytes.Equal(gotDep, wantDep) {
			t.Fatalf("outputs differ from gcc's: object %d/%d bytes, dependency file\n%s\nwant\n%s", len(gotObj), len(wantObj), gotDep, wantDep)
		}
		after := e.stats()
		if after.CacheHits-before.CacheHits != hits || after.DirectHits-before.DirectHits != direct {
			t.Fatalf("hits +%d, direct +%d; want +%d, +%d", after.CacheHits-before.CacheHits, after.DirectHits-before.DirectHits, hits, direct)
		}
	}
	t.Run("FirstCompile", func(t *testing.T) { step(t, 0, 0, "-O2") })
	t.Run("SameAgainIsDirect", func(t *testing.T) { step(t, 1, 1, "-O2") })
	// Other flags make another manifest key; this define changes nothing
	// in the preprocessed file, so the action cache still hits.
	t.Run("OtherFlagsAreNotDirect", func(t *testing.T) { step(t, 1, 0, "-O2", "-DEXTRA=1") })
	t.Run("HeaderTouchedNotChanged", func(t *testing.T) {
		now := time.Now()
		os.Chtimes(header, now, now)
		step(t, 1, 1, "-O2")
	})
	t.Run("HeaderChanged", func(t *testing.T) {
		// Same size, other contents: the timestamps differ, the hash too.
		changed := bytes.Replace(orig, []byte("int add(int, int);"), []byte("long add(int,int);"), 1)
		if len(changed) != len(orig) || bytes.Equal(changed, orig) {
			t.Fatal("test header edit")
		}
		os.WriteFile(header, changed, 0o644)
		step(t, 0, 0, "-O2")
		step(t, 1, 1, "-O2")
	})
	t.Run("BackToTheOldHeader", func(t *testing.T) {
		// The manifest keeps both variants.
		os.WriteFile(header, orig, 0o644)
		step(t, 1, 1, "-O2")
	})
	t.Run("DamagedManifest", func(t *testing.T) {
		// A manifest that is not JSON is no manifest: the normal path
		// runs (an action-cache hit) and writes a good one again.
		manifests, _ := filepath.Glob(filepath.Join(e.cache, "kiln", "cc", "toolchains", "direct", "*", "*.json"))
		if len(manifests) == 0 {
			t.Fatal("no manifests written")
		}
		for _, m := range manifests {
			os.WriteFile(m, []byte("{not json"), 0o644)
		}
		step(t, 1, 0, "-O2")
		step(t, 1, 1, "-O2")
	})
	t.Run("TimeMacroNeverDirect", func(t *testing.T) {
		src := filepath.Join(dir, "src", "t.c")
		os.WriteFile(src, []byte("const char *when = __TIME__;\n"), 0o644)
		for i := 0; i < 2; i++ {
			before := e.stats()
			if _, stderr, code := e.run(dir, "cc", "gcc", "-c", "src/t.c", "-o", "obj/t.o"); code != 0 || stderr != "" {
				t.Fatalf("exit %d %q", code, stderr)
			}
			if s := e.stats(); s.DirectHits != before.DirectHits {
				t.Fatal("a source using __TIME__ was served by direct mode")
			}
		}
	})
}
