package cmdline_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/wrapper/cmdline"
)

// project is a small source tree: C and C++ sources, headers found through
// -I, a header forced with -include, and a macro used as a string.
var project = map[string]string{
	"src/x.c": `#include <stdio.h>
#include "h.h"
static int counter;
int twice(int v) { counter++; return H_FACTOR * v; }
int main(void) { printf("%s %d %s\n", MSG, twice(21), __FILE__); return 0; }
`,
	"src/y.cc": `#include <string>
#include <vector>
#include "h.h"
namespace { std::vector<std::string> names{"a", "b"}; }
std::string joined() { std::string s; for (auto& n : names) s += n; return s + MSG; }
int main() { return (int)joined().size() * H_FACTOR; }
`,
	"src/n.c":     "#include \"h.h\"\nint f(int x) { return x * H_FACTOR + FORCED; }\n",
	"inc/h.h":     "#pragma once\n#define H_FACTOR 2\n#ifndef MSG\n#define MSG \"default\"\n#endif\n",
	"inc/force.h": "#define FORCED 1\n",
}

// writeProject writes project under dir.
func writeProject(t *testing.T, dir string) {
	t.Helper()
	for name, data := range project {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// run runs the compiler in dir and fails the test if it fails.
func run(t *testing.T, dir, compiler string, args ...string) {
	t.Helper()
	cmd := exec.Command(compiler, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %q in %s: %v\n%s", compiler, args, dir, err, out)
	}
}

// readAndRemove returns the contents of the named files under dir and
// deletes them, so that the second build cannot reuse them.
func readAndRemove(t *testing.T, dir string, names ...string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, n := range names {
		p := filepath.Join(dir, n)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("expected output: %v", err)
		}
		out[n] = data
		os.Remove(p)
	}
	return out
}

func requireCompiler(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed", name)
	}
	return p
}

// compare says how the two objects of a TestAgainstGCC case must match.
type compare uint8

const (
	// exact: every output byte-identical.
	exact compare = iota
	// sameCode: dependency files identical, objects identical once their
	// debug sections are stripped (objcopy --strip-debug). This is what
	// -g with column information (gcc's default) gets: a macro expansion
	// that changes the length of a line moves the columns of what
	// follows it in the preprocessed file, and DWARF records columns.
	sameCode
)

// TestAgainstGCC checks PreprocessArgs and RemoteCompileArgs against the
// real gcc: for each command line it compiles once as the user would, then
// again as the wrapper does (local -E, then a compile of the preprocessed
// file in another directory, under another name, as on a worker), and
// compares objects, .dwo files and dependency files.
//
// Findings with gcc 12 (Debian 12.2.0-14): the name and place of the
// preprocessed file do not matter, nor does the worker's directory: gcc
// takes the source name from the first line marker and, under -g, the
// compilation directory from the "# 1 "/cwd//"" marker -E writes. Without
// -g, or with -g -gno-column-info, everything is byte-identical, including
// DW_AT_producer (gcc leaves -D, -I, -i*, -M*, -nostdinc and -fpreprocessed
// out of it; -undef stays, so the remote compile keeps it). With column
// information (the default) the debug line tables differ wherever a macro
// expansion changed a line's length; with -g3 the .debug_macro layout
// differs too. Code and data are identical in every case.
func TestAgainstGCC(t *testing.T) {
	objcopy, _ := exec.LookPath("objcopy")
	for _, tc := range []struct {
		name string
		line string
		how  compare
		// wantDep, wantDwo: Parse must find a dependency file, a .dwo.
		wantDep, wantDwo bool
	}{
		// CMake with Ninja: -MD -MT -MF; no debug information.
		{"CMakeStyleC", "gcc -DNDEBUG -Iinc -O2 -Wall -std=gnu11 -fPIC -MD -MT obj/x.c.o -MF obj/x.c.o.d -o obj/x.c.o -c src/x.c", exact, true, false},
		// -MD alone: gcc derives obj/x.d and the target obj/x.o from -o.
		{"MDDerived", "gcc -Iinc -g -gno-column-info -O1 -DMSG='\"hi\"' -MD -c src/x.c -o obj/x.o", exact, true, false},
		// -MMD -MP without -o: x.o and x.d in the working directory.
		{"MMDNoOutput", "gcc -Iinc -MMD -MP -g -gno-column-info -c src/x.c", exact, true, false},
		// The Linux kernel's -Wp,-MMD,file with -include and quoted macros.
		{"KernelStyle", "gcc -Wp,-MMD,obj/.x.o.d -nostdinc -isystem /usr/lib/gcc/x86_64-linux-gnu/12/include -I/usr/include/x86_64-linux-gnu -I/usr/include -Iinc -include inc/force.h -D__KBUILD=1 -DKBUILD_BASENAME='\"x\"' -fmacro-prefix-map=./= -std=gnu11 -fno-common -O2 -g -gno-column-info -c -o obj/x.o src/x.c", exact, true, false},
		// C++, -MQ with a '$' target (quoted as $$ in the .d).
		{"CXX", "g++ -Iinc -g -gno-column-info -O2 -std=gnu++17 -DMSG='\"cxx\"' -MD -MQ obj/y$.o -MF obj/y.d -c src/y.cc -o obj/y.o", exact, true, false},
		// Split DWARF: the .o names obj/x.dwo; objcopy splits it.
		{"SplitDwarf", "gcc -Iinc -g -gno-column-info -O2 -gsplit-dwarf -MD -c src/x.c -o obj/x.o", exact, true, true},
		// -S writes assembly.
		{"Assembly", "gcc -Iinc -O2 -g -gno-column-info -MD -S src/x.c -o obj/x.s", exact, true, false},
		// -undef is recorded in DW_AT_producer and .GCC.command.line, so
		// the remote compile must keep it.
		{"ProducerFlags", "gcc -undef -nostdinc -Iinc -g -gno-column-info -O2 -frecord-gcc-switches -include inc/force.h -c src/n.c -o obj/n.o", exact, false, false},
		// Default -g: columns differ after macro expansions.
		{"DebugColumns", "gcc -Iinc -g -O2 -DMSG='\"hi\"' -MD -c src/x.c -o obj/x.o", sameCode, true, false},
		// -g3: macro definitions in the debug information.
		{"DebugMacros", "g++ -Iinc -g3 -O2 -std=gnu++17 -MMD -c src/y.cc -o obj/y.o", sameCode, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			argv := cmdline.SplitResponseFile(tc.line)
			compiler := requireCompiler(t, argv[0])
			if tc.how == sameCode && objcopy == "" {
				t.Skip("objcopy not installed")
			}
			dir := t.TempDir()
			writeProject(t, dir)
			os.MkdirAll(filepath.Join(dir, "obj"), 0o755)
			inv, err := cmdline.Parse(argv[0], argv[1:], nil)
			if err != nil {
				t.Fatal(err)
			}
			if !inv.Decision.Remote {
				t.Fatalf("decision %v, want remote", inv.Decision)
			}
			if (inv.DepFile != "") != tc.wantDep || (inv.DwoFile != "") != tc.wantDwo {
				t.Fatalf("DepFile %q DwoFile %q", inv.DepFile, inv.DwoFile)
			}
			outputs := inv.RemoteOutputs()
			if inv.DepFile != "" {
				outputs = append(outputs, inv.DepFile)
			}

			// 1. As the user runs it.
			run(t, dir, compiler, argv[1:]...)
			want := readAndRemove(t, dir, outputs...)

			// 2. As the wrapper runs it: preprocess here, under a name
			// unrelated to the source ...
			pp := filepath.Join(t.TempDir(), "kiln-pp-123"+inv.Language.PreprocessedExt())
			run(t, dir, compiler, inv.PreprocessArgs(pp)...)
			// ... and compile elsewhere, as a worker would.
			worker := t.TempDir()
			os.MkdirAll(filepath.Join(worker, filepath.Dir(inv.Output)), 0o755)
			if err := os.Link(pp, filepath.Join(worker, "input.i")); err != nil {
				t.Fatal(err)
			}
			run(t, worker, compiler, inv.RemoteCompileArgs("input.i", inv.Output)...)
			got := readAndRemove(t, worker, inv.RemoteOutputs()...)
			if inv.DepFile != "" {
				for k, v := range readAndRemove(t, dir, inv.DepFile) {
					got[k] = v
				}
			}
			if tc.how == exact {
				requireSame(t, outputs, want, got)
				return
			}
			if bytes.Equal(want[inv.Output], got[inv.Output]) {
				t.Logf("%s is byte-identical even with column information", inv.Output)
			}
			for _, m := range []map[string][]byte{want, got} {
				m[inv.Output] = stripDebug(t, objcopy, m[inv.Output])
			}
			requireSame(t, outputs, want, got)
		})
	}
}

// requireSame fails unless want and got hold the same bytes for names.
func requireSame(t *testing.T, names []string, want, got map[string][]byte) {
	t.Helper()
	for _, name := range names {
		if !bytes.Equal(want[name], got[name]) {
			t.Errorf("%s differs (%d bytes as compiled, %d through the wrapper)", name, len(want[name]), len(got[name]))
			if strings.HasSuffix(name, ".d") || strings.HasSuffix(name, ".s") {
				t.Logf("as compiled:\n%s\nthrough the wrapper:\n%s", want[name], got[name])
			}
		}
	}
}

// stripDebug returns obj without its debug sections.
func stripDebug(t *testing.T, objcopy string, obj []byte) []byte {
	t.Helper()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.o"), filepath.Join(dir, "out.o")
	if err := os.WriteFile(in, obj, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, dir, objcopy, "--strip-debug", in, out)
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestRebaseAgainstGCC compiles the same project in two checkouts at
// different places, with absolute paths on the command line, through
// Rebase: the preprocessed files (after ReplaceWorkingDirectory) and the
// remote commands are identical, so they make one action, and the remote
// object equals what gcc makes locally from the rebased command in either
// checkout.
func TestRebaseAgainstGCC(t *testing.T) {
	compiler := requireCompiler(t, "gcc")
	root := t.TempDir()
	type result struct {
		pp     []byte
		remote []string
		local  map[string][]byte
		inv    *cmdline.Invocation
	}
	var results []result
	for _, co := range []string{filepath.Join(root, "a", "proj"), filepath.Join(root, "checkout-b", "proj")} {
		writeProject(t, co)
		build := filepath.Join(co, "build")
		os.MkdirAll(filepath.Join(build, "obj"), 0o755)
		argv := []string{"-I" + co + "/inc", "-g", "-gno-column-info", "-O2", "-MD", "-c", co + "/src/x.c", "-o", "obj/x.o"}
		orig, err := cmdline.Parse("gcc", argv, nil)
		if err != nil {
			t.Fatal(err)
		}
		inv := orig.Rebase(co, build)

		run(t, build, compiler, inv.Args...)
		local := readAndRemove(t, build, inv.Output, inv.DepFile)

		pp := filepath.Join(t.TempDir(), "x.i")
		run(t, build, compiler, inv.PreprocessArgs(pp)...)
		dep := readAndRemove(t, build, inv.DepFile)
		if !bytes.Equal(dep[inv.DepFile], local[inv.DepFile]) {
			t.Errorf("%s: dependency file differs:\n%s\n%s", co, dep[inv.DepFile], local[inv.DepFile])
		}
		data, err := os.ReadFile(pp)
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, result{cmdline.ReplaceWorkingDirectory(data, co), inv.RemoteCompileArgs("in.i", inv.Output), local, inv})
	}
	a, b := results[0], results[1]
	if !bytes.Equal(a.pp, b.pp) {
		t.Errorf("preprocessed files differ between checkouts")
	}
	if bytes.Contains(a.pp, []byte(root)) {
		t.Errorf("the preprocessed file still names the checkout")
	}
	if !reflect.DeepEqual(a.remote, b.remote) {
		t.Errorf("remote commands differ:\n%q\n%q", a.remote, b.remote)
	}
	if !bytes.Equal(a.local[a.inv.Output], b.local[b.inv.Output]) {
		t.Errorf("local objects differ between checkouts")
	}
	worker := t.TempDir()
	os.MkdirAll(filepath.Join(worker, "obj"), 0o755)
	if err := os.WriteFile(filepath.Join(worker, "in.i"), a.pp, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, worker, compiler, a.remote...)
	got := readAndRemove(t, worker, a.inv.Output)
	if !bytes.Equal(got[a.inv.Output], a.local[a.inv.Output]) {
		t.Errorf("remote object differs from the local one")
	}
}
