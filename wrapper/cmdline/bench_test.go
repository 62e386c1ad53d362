package cmdline_test

import (
	"testing"

	"github.com/kiln-build/kiln/wrapper/cmdline"
)

// BenchmarkParseConftest measures deciding "local" for an autoconf
// conftest compile, the decision that must cost (next to) nothing.
func BenchmarkParseConftest(b *testing.B) {
	args := cmdline.SplitResponseFile("-c -g -O2 -Wall -DPACKAGE_NAME=\"foo\" -DPACKAGE_VERSION=\"1.0\" -DHAVE_STDIO_H=1 -DHAVE_STDLIB_H=1 -DHAVE_STRING_H=1 -I. conftest.c")
	opts := cmdline.Options{ReadFile: noFiles, Exists: func(string) bool { return false }}
	b.ReportAllocs()
	for b.Loop() {
		inv, err := cmdline.ParseWithOptions("gcc", args, opts)
		if err != nil || inv.Decision.Reason != cmdline.ReasonConftest {
			b.Fatal(inv.Decision, err)
		}
	}
}

// BenchmarkParseCMake measures parsing a typical remote CMake compile with
// 30 arguments and deriving both command lines.
func BenchmarkParseCMake(b *testing.B) {
	args := cmdline.SplitResponseFile("-DFOO_EXPORTS -DBAR=1 -I/src/include -I/src/build/gen -isystem /src/third_party/abseil -isystem /src/third_party/fmt/include -O2 -g -DNDEBUG -fPIC -Wall -Wextra -Werror=return-type -std=gnu++17 -fvisibility=hidden -fvisibility-inlines-hidden -ffunction-sections -MD -MT CMakeFiles/foo.dir/src/a.cc.o -MF CMakeFiles/foo.dir/src/a.cc.o.d -o CMakeFiles/foo.dir/src/a.cc.o -c /src/src/a.cc")
	opts := cmdline.Options{ReadFile: noFiles, Exists: func(string) bool { return false }}
	b.ReportAllocs()
	for b.Loop() {
		inv, err := cmdline.ParseWithOptions("/usr/bin/c++", args, opts)
		if err != nil || !inv.Decision.Remote {
			b.Fatal(inv.Decision, err)
		}
		_ = inv.PreprocessArgs("/tmp/a.ii")
		_ = inv.RemoteCompileArgs("a.ii", inv.Output)
	}
}
