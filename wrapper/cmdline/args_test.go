package cmdline_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/wrapper/cmdline"
)

func TestPreprocessArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		line string
		want string // the arguments, space separated
	}{
		// No dependency flags: drop -c and -o, add -E -o.
		{"Plain", "gcc -O2 -Iinc -c x.c -o obj/x.o", "-O2 -Iinc x.c -E -o pp.i"},
		// -MD alone: name the .d and the target as the compile would.
		{"MD", "gcc -MD -c x.c -o obj/x.o", "-MD x.c -E -MF obj/x.d -MQ obj/x.o -o pp.i"},
		// -MD without -o: gcc's default target (x.o) is the same under -E.
		{"MDNoOutput", "gcc -MD -c sub/x.c", "-MD sub/x.c -E -MF x.d -o pp.i"},
		// CMake gives -MT and -MF: nothing to add.
		{"CMake", "cc -MD -MT obj/x.c.o -MF obj/x.c.o.d -o obj/x.c.o -c x.c", "-MD -MT obj/x.c.o -MF obj/x.c.o.d x.c -E -o pp.i"},
		// -MQ counts as a target too.
		{"MQ", "cc -MMD -MQ obj/x.o -c x.c -o obj/x.o", "-MMD -MQ obj/x.o x.c -E -MF obj/x.d -o pp.i"},
		// The kernel's -Wp,-MMD passes through.
		{"Kernel", "gcc -Wp,-MMD,d/.x.o.d -nostdinc -c -o d/x.o d/x.c", "-Wp,-MMD,d/.x.o.d -nostdinc d/x.c -E -o pp.i"},
		// -x stays where it was.
		{"X", "gcc -x c -c foo.inc -o foo.o", "-x c foo.inc -E -o pp.i"},
		// -S is dropped like -c.
		{"S", "gcc -S -O2 x.c -o x.s", "-O2 x.c -E -o pp.i"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := strings.Join(parseLine(t, tc.line).PreprocessArgs("pp.i"), " ")
			if got != tc.want {
				t.Errorf("PreprocessArgs\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestRemoteCompileArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		line string
		want string
	}{
		// Preprocessor and dependency flags go; code generation stays, in order.
		{"CMake", "cc -DFOO -I/src/include -isystem /sys -O2 -g -fPIC -std=gnu11 -MD -MT o.o -MF o.d -o o.o -c /src/x.c",
			"-O2 -g -fPIC -std=gnu11 -c -x cpp-output in.i -o out.o"},
		// C++ becomes c++-cpp-output.
		{"CXX", "g++ -O2 -c x.cc", "-O2 -c -x c++-cpp-output in.i -o out.o"},
		// g++ compiles .c as C++.
		{"GXXDotC", "g++ -c x.c", "-c -x c++-cpp-output in.i -o out.o"},
		// -S stays -S.
		{"S", "gcc -S x.c", "-S -x cpp-output in.i -o out.o"},
		// -include, -imacros, -iquote, --sysroot, -Wp and -Xpreprocessor go;
		// -nostdinc and -undef stay (gcc records them).
		{"Preprocessor", "gcc -include f.h -imacros m.h -iquote q --sysroot=/s -Wp,-MMD,x.d -Xpreprocessor -DX -nostdinc -undef -c x.c",
			"-nostdinc -undef -c -x cpp-output in.i -o out.o"},
		// -x before the source is replaced.
		{"X", "gcc -x c++ -Wall -c foo.inc", "-Wall -c -x c++-cpp-output in.i -o out.o"},
		// Preprocessed input keeps its language.
		{"DotI", "gcc -O1 -c x.i", "-O1 -c -x cpp-output in.i -o out.o"},
		// Link-only options are harmless and kept.
		{"LinkOptions", "gcc -c x.c -Wl,-z,now -pthread", "-Wl,-z,now -pthread -c -x cpp-output in.i -o out.o"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := strings.Join(parseLine(t, tc.line).RemoteCompileArgs("in.i", "out.o"), " ")
			if got != tc.want {
				t.Errorf("RemoteCompileArgs\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestRemoteOutputs(t *testing.T) {
	inv := parseLine(t, "gcc -gsplit-dwarf -MD -c x.c -o o/x.o")
	if got, want := inv.RemoteOutputs(), []string{"o/x.o", "o/x.dwo"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("RemoteOutputs = %q, want %q", got, want)
	}
}

func TestRebase(t *testing.T) {
	for _, tc := range []struct {
		name       string
		line       string
		base, cwd  string
		preprocess string // PreprocessArgs("pp.i")
		remote     string // RemoteCompileArgs("pp.i", Output)
		output     string
		dep        string
	}{
		// CMake in /home/a/proj/build: absolute paths under the base become relative.
		{"CMake", "cc -I/home/a/proj/include -isystem /usr/include/x -MD -MT o/x.o -MF o/x.d -o /home/a/proj/build/o/x.o -c /home/a/proj/src/x.c",
			"/home/a/proj", "/home/a/proj/build",
			"-fdebug-prefix-map=/home/a/proj=. -I../include -isystem /usr/include/x -MD -MT o/x.o -MF o/x.d ../src/x.c -E -o pp.i",
			"-c -x cpp-output pp.i -o o/x.o",
			"o/x.o", "o/x.d"},
		// -MD alone: the target stays the -o path as written, the .d is the same file.
		{"MDTarget", "gcc -MD -c /p/src/x.c -o /p/b/x.o", "/p", "/p/b",
			"-fdebug-prefix-map=/p=. -MD ../src/x.c -E -MF x.d -MQ /p/b/x.o -o pp.i",
			"-c -x cpp-output pp.i -o x.o",
			"x.o", "x.d"},
		// Paths outside the base and relative paths are left alone; so is
		// a path that merely shares a prefix with the base.
		{"Outside", "gcc -I/usr/local/include -Iinc -I/pother/inc -c /p/x.c", "/p", "/p",
			"-fdebug-prefix-map=/p=. -I/usr/local/include -Iinc -I/pother/inc x.c -E -o pp.i",
			"-c -x cpp-output pp.i -o x.o",
			"x.o", ""},
		// The working directory outside the base: paths climb out with "..".
		{"CwdOutside", "gcc -include /p/inc/f.h -c /p/x.c -o /out/x.o", "/p", "/out",
			"-fdebug-prefix-map=/p=. -include ../p/inc/f.h ../p/x.c -E -o pp.i",
			"-c -x cpp-output pp.i -o /out/x.o",
			"/out/x.o", ""},
		// Joined forms keep their spelling.
		{"Joined", "gcc -I/p/inc -isystem/p/sys --sysroot=/p/sr -c x.c -o/p/x.o", "/p/", "/p",
			"-fdebug-prefix-map=/p=. -Iinc -isystemsys --sysroot=sr x.c -E -o pp.i",
			"-c -x cpp-output pp.i -o x.o",
			"x.o", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig := parseLine(t, tc.line)
			inv := orig.Rebase(tc.base, tc.cwd)
			if got := strings.Join(inv.PreprocessArgs("pp.i"), " "); got != tc.preprocess {
				t.Errorf("PreprocessArgs\n got %s\nwant %s", got, tc.preprocess)
			}
			if got := strings.Join(inv.RemoteCompileArgs("pp.i", inv.Output), " "); got != tc.remote {
				t.Errorf("RemoteCompileArgs\n got %s\nwant %s", got, tc.remote)
			}
			if inv.Output != tc.output || inv.DepFile != tc.dep {
				t.Errorf("Output %q DepFile %q, want %q %q", inv.Output, inv.DepFile, tc.output, tc.dep)
			}
			if got, want := inv.DebugPrefixMap(), "-fdebug-prefix-map="+strings.TrimSuffix(tc.base, "/")+"=."; got != want || inv.Args[0] != want {
				t.Errorf("DebugPrefixMap() = %q, Args[0] = %q, want %q", got, inv.Args[0], want)
			}
			if inv.Decision != orig.Decision {
				t.Errorf("decision changed: %v -> %v", orig.Decision, inv.Decision)
			}
		})
	}
	t.Run("EmptyBase", func(t *testing.T) {
		inv := parseLine(t, "gcc -c /p/x.c")
		if inv.Rebase("", "/p") != inv || inv.DebugPrefixMap() != "" {
			t.Fatal("Rebase with no base dir made a copy")
		}
	})
	t.Run("TwoCheckouts", func(t *testing.T) {
		// The point of it all: the same compile in two checkouts gives the
		// same arguments.
		a := parseLine(t, "gcc -I/home/a/w/inc -MD -c /home/a/w/src/x.c -o x.o").Rebase("/home/a/w", "/home/a/w/build")
		b := parseLine(t, "gcc -I/srv/ci/w/inc -MD -c /srv/ci/w/src/x.c -o x.o").Rebase("/srv/ci/w", "/srv/ci/w/build")
		pa, pb := a.PreprocessArgs("pp.i")[1:], b.PreprocessArgs("pp.i")[1:] // [0] is the map
		if !reflect.DeepEqual(pa, pb) {
			t.Fatalf("\n%q\n%q", pa, pb)
		}
		ra, rb := a.RemoteCompileArgs("pp.i", a.Output), b.RemoteCompileArgs("pp.i", b.Output)
		if !reflect.DeepEqual(ra, rb) {
			t.Fatalf("\n%q\n%q", ra, rb)
		}
	})
}

func TestReplaceWorkingDirectory(t *testing.T) {
	for _, tc := range []struct {
		name, in, base, want string
	}{
		{"UnderBase", "# 0 \"../src/x.c\"\n# 1 \"/home/a/w/build//\"\n# 0 \"<built-in>\"\n", "/home/a/w",
			"# 0 \"../src/x.c\"\n# 1 \"./build//\"\n# 0 \"<built-in>\"\n"},
		{"IsBase", "# 0 \"x.c\"\n# 1 \"/home/a/w//\"\nint x;\n", "/home/a/w/",
			"# 0 \"x.c\"\n# 1 \".//\"\nint x;\n"},
		// gcc's prefix map is a plain string prefix; so is this.
		{"SharedPrefix", "# 0 \"x.c\"\n# 1 \"/home/a/w2//\"\n", "/home/a/w",
			"# 0 \"x.c\"\n# 1 \".2//\"\n"},
		{"Outside", "# 0 \"x.c\"\n# 1 \"/tmp/b//\"\nint x;\n", "/home/a/w", "# 0 \"x.c\"\n# 1 \"/tmp/b//\"\nint x;\n"},
		// No -g: no marker.
		{"NoMarker", "# 0 \"x.c\"\n# 0 \"<built-in>\"\n", "/", "# 0 \"x.c\"\n# 0 \"<built-in>\"\n"},
		{"Empty", "", "/", ""},
		{"OneLine", "# 0 \"x.c\"", "/", "# 0 \"x.c\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(cmdline.ReplaceWorkingDirectory([]byte(tc.in), tc.base)); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestWantsDirectivesOnly(t *testing.T) {
	for _, tc := range []struct {
		cmd  string
		want bool
	}{
		{"gcc -c a.c", false},
		{"gcc -g -c a.c", true},
		{"g++ -O2 -g -c a.cc", true},
		{"cc -ggdb -c a.c", true},
		{"gcc -g1 -c a.c", true},
		{"gcc -gdwarf-4 -c a.c", true},
		{"gcc -g -gno-column-info -c a.c", false},
		{"gcc -gno-column-info -g -gcolumn-info -c a.c", true},
		{"gcc -g -g0 -c a.c", false},
		{"gcc -g3 -c a.c", false},
		{"gcc -g3 -g -c a.c", true},
		{"gcc -g3 -gdwarf-5 -c a.c", false},
		{"clang -g -c a.c", false},
		{"gcc -g -c a.i", false},
		{"gcc -g -c a.s", false},
	} {
		f := strings.Fields(tc.cmd)
		inv, err := cmdline.Parse(f[0], f[1:], nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := inv.WantsDirectivesOnly(); got != tc.want {
			t.Errorf("%s: WantsDirectivesOnly %v, want %v", tc.cmd, got, tc.want)
		}
	}
}
