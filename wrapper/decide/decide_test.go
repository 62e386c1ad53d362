package decide_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/wrapper/decide"
)

func TestDecide(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	links := filepath.Join(dir, "links")
	for _, d := range []string{bin, links, filepath.Join(dir, "obj")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	gcc := filepath.Join(bin, "gcc")
	self := filepath.Join(dir, "kiln")
	for _, f := range []string{gcc, self} {
		if err := os.WriteFile(f, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A kiln install-bins link comes first in PATH and must be skipped.
	if err := os.Symlink(self, filepath.Join(links, "gcc")); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	path := links + ":relative:" + bin
	for _, tc := range []struct {
		name, args, local string
	}{
		{"Compile", "-c x.c -o obj/x.o", ""},
		{"Link", "x.o -o x", "link"},
		{"Conftest", "-c conftest.c -o conftest.o", "conftest"},
		{"OutputDirMissing", "-c x.c -o nodir/x.o", decide.ReasonOutputDirMissing},
		{"SplitDwarfOutsideCwd", "-c x.c -gsplit-dwarf -o ../x.o", decide.ReasonOutputPath},
		{"ResponseFileLoop", "@loop.rsp", decide.ReasonParseError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile("loop.rsp", []byte("@loop.rsp"), 0o644); err != nil {
				t.Fatal(err)
			}
			r, err := decide.Decide("gcc", strings.Fields(tc.args), decide.Options{PATH: path, Self: self})
			if err != nil {
				t.Fatal(err)
			}
			if r.Path != gcc || r.Local != tc.local {
				t.Fatalf("route %q local=%q, want %q local=%q", r.Path, r.Local, gcc, tc.local)
			}
		})
	}
	if _, err := decide.Decide("gcc", []string{"-c", "x.c"}, decide.Options{PATH: links + ":relative", Self: self}); err == nil {
		t.Fatal("found a compiler where there is only a link to kiln and a relative PATH entry")
	}
	if r, err := decide.Decide("./bin/gcc", []string{"-c", "x.c"}, decide.Options{Self: self}); err != nil || r.Path != gcc {
		t.Fatalf("a path with a slash resolves to %q, %v; want %q", r.Path, err, gcc)
	}
}
