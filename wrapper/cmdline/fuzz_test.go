package cmdline_test

import (
	"io/fs"
	"reflect"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/wrapper/cmdline"
)

// FuzzParse checks that Parse never panics, whatever the command line and
// response files, and that a Remote decision always comes with exactly one
// remotable source and an output, and survives Rebase.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"-c x.c -o x.o",
		"-MD -MF x.d -MT t -c x.c",
		"-Wp,-MMD,.x.o.d -include k.h -DX='\"y\"' -c -o d/x.o d/x.c",
		"-x c++ -c - -o x.o",
		"-c x.c -o",
		"-c x.c @r.rsp",
		"-gsplit-dwarf -S x.cc -o .x",
		"-x cobol -c x.c",
		"-Wa,-I,dir -c x.c",
		"-c conftest.c",
		"-Xpreprocessor -MD -Xpreprocessor f -c x.c",
		"-c '' -o ''",
		"-o - -c x.c",
		"-x c -c x.i -x none",
	} {
		f.Add("gcc", seed, "-DA @r.rsp")
	}
	f.Add("g++-12", "-c @r.rsp", "'-DX=\"a b\"' x.cc")
	f.Fuzz(func(t *testing.T, compiler, line, rsp string) {
		args := cmdline.SplitResponseFile(line)
		read := func(name string) ([]byte, error) {
			if name == "r.rsp" {
				return []byte(rsp), nil
			}
			return nil, fs.ErrNotExist
		}
		inv, err := cmdline.ParseWithOptions(compiler, args, cmdline.Options{
			ReadFile: read,
			Exists:   func(p string) bool { return strings.HasSuffix(p, "pch.h.gch") },
		})
		if err != nil {
			return // response file loops are errors, never panics
		}
		// These must not panic for any invocation.
		_ = inv.PreprocessArgs("pp.i")
		_ = inv.RemoteCompileArgs("pp.i", "out.o")
		_ = inv.Decision.String()
		if !inv.Decision.Remote {
			if inv.Decision.Reason == cmdline.ReasonNone || inv.Decision.Text == "" {
				t.Fatalf("local decision without a reason: %+v", inv.Decision)
			}
			return
		}
		if inv.Decision.Reason != cmdline.ReasonNone {
			t.Fatalf("remote decision with reason %s", inv.Decision.Reason)
		}
		if inv.Source == "" || inv.Output == "" || inv.Source == "-" || inv.Output == "-" {
			t.Fatalf("remote with source %q output %q: %q", inv.Source, inv.Output, inv.Args)
		}
		if !inv.Language.Remotable() || inv.Language.Preprocessed() == "" {
			t.Fatalf("remote with language %q", inv.Language)
		}
		if inv.Mode != cmdline.ModeCompile && inv.Mode != cmdline.ModeAssembly {
			t.Fatalf("remote with mode %v", inv.Mode)
		}
		// Exactly one source: it appears once among the arguments the
		// remote compile does not get, and the preprocess gets it.
		pre := inv.PreprocessArgs("pp.i")
		if pre[len(pre)-3] != "-E" && !contains(pre, "-E") {
			t.Fatalf("PreprocessArgs without -E: %q", pre)
		}
		remote := inv.RemoteCompileArgs("pp.i", "out.o")
		n := len(remote)
		if remote[n-6] != inv.Mode.String() || remote[n-5] != "-x" || remote[n-4] != string(inv.Language.Preprocessed()) ||
			remote[n-3] != "pp.i" || remote[n-2] != "-o" || remote[n-1] != "out.o" {
			t.Fatalf("RemoteCompileArgs %q", remote)
		}
		// The remote compile gets the compile flags and nothing else of
		// the original line: no -D, -I, -M*, -o or source.
		if !reflect.DeepEqual(remote[:n-6], inv.CompileFlags) && !(len(inv.CompileFlags) == 0 && n == 6) {
			t.Fatalf("RemoteCompileArgs %q, CompileFlags %q", remote, inv.CompileFlags)
		}
		// Rebase keeps the decision and finds the same kind of source.
		r := inv.Rebase("/base", "/base/build")
		if r.Decision != inv.Decision || r.Language != inv.Language || r.Mode != inv.Mode || (r.Output == "") {
			t.Fatalf("Rebase changed %+v into %+v", inv, r)
		}
	})
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
