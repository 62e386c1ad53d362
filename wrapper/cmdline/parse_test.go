package cmdline_test

import (
	"io/fs"
	"reflect"
	"testing"

	"github.com/kiln-build/kiln/wrapper/cmdline"
)

// noFiles is a ReadFile for command lines without response files.
func noFiles(string) ([]byte, error) { return nil, fs.ErrNotExist }

// parseLine parses a command line written as a shell-like string (split
// with the response-file rules) with no response files and no .gch files.
func parseLine(t testing.TB, line string) *cmdline.Invocation {
	t.Helper()
	argv := cmdline.SplitResponseFile(line)
	inv, err := cmdline.ParseWithOptions(argv[0], argv[1:], cmdline.Options{
		ReadFile: noFiles,
		Exists:   func(string) bool { return false },
	})
	if err != nil {
		t.Fatalf("Parse(%q): %v", line, err)
	}
	return inv
}

// remoteCase is a command line that must compile remotely, with the
// fields Parse must derive.
type remoteCase struct {
	name   string
	line   string
	source string
	lang   cmdline.Language
	mode   cmdline.Mode
	output string
	dep    string
	dwo    string
}

func TestParseRemote(t *testing.T) {
	for _, tc := range []remoteCase{
		// CMake, Ninja generator, C: absolute source, object under CMakeFiles.
		{"CMakeNinjaC", "/usr/bin/cc -DFOO_EXPORTS -I/src/include -isystem /src/third_party -O2 -g -DNDEBUG -fPIC -Wall -std=gnu11 -MD -MT CMakeFiles/foo.dir/src/a.c.o -MF CMakeFiles/foo.dir/src/a.c.o.d -o CMakeFiles/foo.dir/src/a.c.o -c /src/src/a.c",
			"/src/src/a.c", cmdline.LangC, cmdline.ModeCompile, "CMakeFiles/foo.dir/src/a.c.o", "CMakeFiles/foo.dir/src/a.c.o.d", ""},
		// CMake, C++ with visibility flags.
		{"CMakeNinjaCXX", "/usr/bin/c++ -DBOOST_ALL_NO_LIB -I/src -O3 -DNDEBUG -std=gnu++17 -fvisibility=hidden -fvisibility-inlines-hidden -MD -MT CMakeFiles/app.dir/main.cpp.o -MF CMakeFiles/app.dir/main.cpp.o.d -o CMakeFiles/app.dir/main.cpp.o -c /src/main.cpp",
			"/src/main.cpp", cmdline.LangCXX, cmdline.ModeCompile, "CMakeFiles/app.dir/main.cpp.o", "CMakeFiles/app.dir/main.cpp.o.d", ""},
		// CMake, Makefile generator: dependencies by -MD -MT -MF too.
		{"CMakeMake", "/usr/bin/gcc-12 -I/w/build -I/w/src -O2 -g -DNDEBUG -MD -MT src/CMakeFiles/lib.dir/util.c.o -MF CMakeFiles/lib.dir/util.c.o.d -o CMakeFiles/lib.dir/util.c.o -c /w/src/util.c",
			"/w/src/util.c", cmdline.LangC, cmdline.ModeCompile, "CMakeFiles/lib.dir/util.c.o", "CMakeFiles/lib.dir/util.c.o.d", ""},
		// Names close to zlib's configure tests (ztest<PID>.c) that are not one.
		{"ZtestWithoutPID", "gcc -c ztest.c", "ztest.c", cmdline.LangC, cmdline.ModeCompile, "ztest.o", "", ""},
		{"ZtestLetters", "gcc -c ztestx1.c", "ztestx1.c", cmdline.LangC, cmdline.ModeCompile, "ztestx1.o", "", ""},
		// automake: -MT -MD -MP -MF .deps/foo.Tpo, -o after -c.
		{"Automake", "gcc -DHAVE_CONFIG_H -I. -I..  -g -O2 -MT foo.o -MD -MP -MF .deps/foo.Tpo -c -o foo.o foo.c",
			"foo.c", cmdline.LangC, cmdline.ModeCompile, "foo.o", ".deps/foo.Tpo", ""},
		// libtool's PIC compile into .libs/.
		{"Libtool", "gcc -DHAVE_CONFIG_H -I. -I.. -g -O2 -MT libfoo_la-bar.lo -MD -MP -MF .deps/libfoo_la-bar.Tpo -c bar.c  -fPIC -DPIC -o .libs/libfoo_la-bar.o",
			"bar.c", cmdline.LangC, cmdline.ModeCompile, ".libs/libfoo_la-bar.o", ".deps/libfoo_la-bar.Tpo", ""},
		// Linux kernel: -Wp,-MMD names the dependency file; -include, quoted macros.
		{"Kernel", `gcc -Wp,-MMD,drivers/base/.core.o.d -nostdinc -I./arch/x86/include -I./arch/x86/include/generated -I./include -include ./include/linux/compiler-version.h -include ./include/linux/kconfig.h -D__KERNEL__ -fmacro-prefix-map=./= -std=gnu11 -fshort-wchar -funsigned-char -fno-common -fno-PIE -fno-strict-aliasing -mno-sse -mno-mmx -m64 -falign-jumps=1 -mno-red-zone -mcmodel=kernel -Wall -Wundef -Werror=strict-prototypes -fno-stack-protector -pg -mrecord-mcount -mfentry -DCC_USING_FENTRY -fno-asynchronous-unwind-tables -Wa,--noexecstack -DKBUILD_MODFILE='"drivers/base/core"' -DKBUILD_BASENAME='"core"' -DKBUILD_MODNAME='"core"' -D__KBUILD_MODNAME=kmod_core -c -o drivers/base/core.o drivers/base/core.c`,
			"drivers/base/core.c", cmdline.LangC, cmdline.ModeCompile, "drivers/base/core.o", "drivers/base/.core.o.d", ""},
		// Meson: -MD -MQ -MF, source one level up.
		{"Meson", "cc -Ilibfoo.so.p -I. -I.. -fdiagnostics-color=always -D_FILE_OFFSET_BITS=64 -Wall -Winvalid-pch -O0 -g -fPIC -MD -MQ libfoo.so.p/foo.c.o -MF libfoo.so.p/foo.c.o.d -o libfoo.so.p/foo.c.o -c ../foo.c",
			"../foo.c", cmdline.LangC, cmdline.ModeCompile, "libfoo.so.p/foo.c.o", "libfoo.so.p/foo.c.o.d", ""},
		// Bazel's auto-configured toolchain: -MD -MF, -iquote, -frandom-seed.
		{"Bazel", `/usr/bin/gcc -U_FORTIFY_SOURCE -fstack-protector -Wall -Wunused-but-set-parameter -Wno-free-nonheap-object -fno-omit-frame-pointer -g0 -O2 -D_FORTIFY_SOURCE=1 -DNDEBUG -ffunction-sections -fdata-sections -std=c++0x -MD -MF bazel-out/k8-opt/bin/_objs/foo/foo.d -frandom-seed=bazel-out/k8-opt/bin/_objs/foo/foo.o -iquote . -iquote bazel-out/k8-opt/bin -Wno-builtin-macro-redefined -D__DATE__="redacted" -D__TIMESTAMP__="redacted" -D__TIME__="redacted" -c foo.cc -o bazel-out/k8-opt/bin/_objs/foo/foo.o`,
			"foo.cc", cmdline.LangCXX, cmdline.ModeCompile, "bazel-out/k8-opt/bin/_objs/foo/foo.o", "bazel-out/k8-opt/bin/_objs/foo/foo.d", ""},
		// Plain -c: the object goes to the working directory.
		{"DerivedObject", "gcc -c src/dir/x.c", "src/dir/x.c", cmdline.LangC, cmdline.ModeCompile, "x.o", "", ""},
		// -S: foo.s, in the working directory.
		{"DerivedAssembly", "gcc -S -O2 lib/foo.c", "lib/foo.c", cmdline.LangC, cmdline.ModeAssembly, "foo.s", "", ""},
		// -S wins over -c, as in gcc.
		{"SWinsOverC", "gcc -c -S foo.c", "foo.c", cmdline.LangC, cmdline.ModeAssembly, "foo.s", "", ""},
		// -MD without -o: the .d is named after the source, in the working directory.
		{"MDNoOutput", "gcc -MD -c sub/y.c", "sub/y.c", cmdline.LangC, cmdline.ModeCompile, "y.o", "y.d", ""},
		// -MD with -o: gcc's %.d%* replaces -o's extension.
		{"MDFromOutput", "gcc -MD -c x.c -o out/x.obj", "x.c", cmdline.LangC, cmdline.ModeCompile, "out/x.obj", "out/x.d", ""},
		// ... only the last one: x.o.tmp gives x.o.d.
		{"MDLastExtension", "gcc -MMD -c x.c -o x.o.tmp", "x.c", cmdline.LangC, cmdline.ModeCompile, "x.o.tmp", "x.o.d", ""},
		// ... and a dot in a directory name is not an extension.
		{"MDDottedDir", "gcc -MD -c x.c -o sub.x/d", "x.c", cmdline.LangC, cmdline.ModeCompile, "sub.x/d", "sub.x/d.d", ""},
		// ... but a leading dot of the base name is (gcc 12 writes .d).
		{"MDLeadingDot", "gcc -MD -c x.c -o .g", "x.c", cmdline.LangC, cmdline.ModeCompile, ".g", ".d", ""},
		// -MF wins over the derived name.
		{"MFWins", "gcc -MD -MF deps/x.dep -c x.c -o x.o", "x.c", cmdline.LangC, cmdline.ModeCompile, "x.o", "deps/x.dep", ""},
		// -MD with -S: the .d follows -o's name too.
		{"MDAssembly", "gcc -S -MD x.c -o sub/x.s", "x.c", cmdline.LangC, cmdline.ModeAssembly, "sub/x.s", "sub/x.d", ""},
		// Split DWARF: .dwo next to the object.
		{"SplitDwarf", "gcc -g -gsplit-dwarf -c x.c -o obj/x.o", "x.c", cmdline.LangC, cmdline.ModeCompile, "obj/x.o", "", "obj/x.dwo"},
		// ... a leading dot is not an extension there (gcc writes .g.dwo).
		{"SplitDwarfLeadingDot", "gcc -g -gsplit-dwarf -c x.c -o .g", "x.c", cmdline.LangC, cmdline.ModeCompile, ".g", "", ".g.dwo"},
		// ... without -o, in the working directory.
		{"SplitDwarfNoOutput", "gcc -gsplit-dwarf -c sub/m.c", "sub/m.c", cmdline.LangC, cmdline.ModeCompile, "m.o", "", "m.dwo"},
		// ... -gno-split-dwarf after it cancels it.
		{"SplitDwarfCancelled", "gcc -gsplit-dwarf -gno-split-dwarf -c x.c", "x.c", cmdline.LangC, cmdline.ModeCompile, "x.o", "", ""},
		// ... and -S writes no .dwo.
		{"SplitDwarfAssembly", "gcc -gsplit-dwarf -S x.c", "x.c", cmdline.LangC, cmdline.ModeAssembly, "x.s", "", ""},
		// g++ compiles .c files as C++ ...
		{"GXXDotC", "g++ -c x.c", "x.c", cmdline.LangCXX, cmdline.ModeCompile, "x.o", "", ""},
		// ... and .i files as preprocessed C++.
		{"GXXDotI", "g++-12 -c x.i", "x.i", cmdline.LangCXXPreprocessed, cmdline.ModeCompile, "x.o", "", ""},
		// gcc compiles .C as C++.
		{"GCCDotCapitalC", "gcc -c x.C", "x.C", cmdline.LangCXX, cmdline.ModeCompile, "x.o", "", ""},
		// Preprocessed input: no dependency file even with -MD (gcc runs no cpp).
		{"PreprocessedInput", "gcc -MD -c x.i -o x.o", "x.i", cmdline.LangCPreprocessed, cmdline.ModeCompile, "x.o", "", ""},
		// -x c++ applies to the file after it, whatever its extension.
		{"XLanguage", "gcc -x c++ -c foo.inc -o foo.o", "foo.inc", cmdline.LangCXX, cmdline.ModeCompile, "foo.o", "", ""},
		// -xc joined.
		{"XJoined", "gcc -xc -c foo.txt", "foo.txt", cmdline.LangC, cmdline.ModeCompile, "foo.o", "", ""},
		// -x none restores the extension rule.
		{"XNone", "gcc -x c++ -x none -c foo.c", "foo.c", cmdline.LangC, cmdline.ModeCompile, "foo.o", "", ""},
		// -x after the source does not apply to it.
		{"XAfterSource", "gcc -c foo.c -x c++", "foo.c", cmdline.LangC, cmdline.ModeCompile, "foo.o", "", ""},
		// Joined -o, -I, -D.
		{"JoinedForms", "gcc -Iinc -DX=1 -c x.c -ox.o", "x.c", cmdline.LangC, cmdline.ModeCompile, "x.o", "", ""},
		// Paths with spaces.
		{"Spaces", `gcc -I "inc dir" -MD -c "my src/x y.c" -o "out dir/x y.o"`, "my src/x y.c", cmdline.LangC, cmdline.ModeCompile, "out dir/x y.o", "out dir/x y.d", ""},
		// Quotes inside arguments.
		{"Quotes", `gcc '-DMSG="it'\''s"' -c "it's.c"`, "it's.c", cmdline.LangC, cmdline.ModeCompile, "it's.o", "", ""},
		// clang and clang++ with their own flags.
		{"Clang", "clang-15 --target=x86_64-linux-gnu -fcolor-diagnostics -Qunused-arguments -Weverything -c x.c -o x.o", "x.c", cmdline.LangC, cmdline.ModeCompile, "x.o", "", ""},
		{"ClangXX", "clang++ -stdlib=libc++ -std=c++20 -c x.cpp", "x.cpp", cmdline.LangCXX, cmdline.ModeCompile, "x.o", "", ""},
		// A cross compiler with a target prefix and a version.
		{"CrossPrefix", "aarch64-linux-gnu-gcc-12 -march=armv8-a -c x.c", "x.c", cmdline.LangC, cmdline.ModeCompile, "x.o", "", ""},
		// Assembler options on the allow list.
		{"AssemblerOptions", "gcc -Wa,--noexecstack,--64 -Xassembler --compress-debug-sections=zlib -c x.c", "x.c", cmdline.LangC, cmdline.ModeCompile, "x.o", "", ""},
		// Link-only options are ignored by gcc -c.
		{"LinkFlagsWithC", "gcc -c x.c -Wl,--as-needed -L/opt/lib -pthread -static-libgcc", "x.c", cmdline.LangC, cmdline.ModeCompile, "x.o", "", ""},
		// -Xpreprocessor with a define.
		{"Xpreprocessor", "gcc -Xpreprocessor -DFOO -c x.c", "x.c", cmdline.LangC, cmdline.ModeCompile, "x.o", "", ""},
		// --param, both spellings; --sysroot, both spellings.
		{"ParamSysroot", "gcc --param max-inline-insns-single=100 --param=ggc-min-expand=10 --sysroot /sr --sysroot=/sr -c x.c", "x.c", cmdline.LangC, cmdline.ModeCompile, "x.o", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv := parseLine(t, tc.line)
			if !inv.Decision.Remote || inv.Decision.Reason != cmdline.ReasonNone {
				t.Fatalf("decision %v, want remote", inv.Decision)
			}
			got := remoteCase{tc.name, tc.line, inv.Source, inv.Language, inv.Mode, inv.Output, inv.DepFile, inv.DwoFile}
			if got != tc {
				t.Errorf("got  %+v\nwant %+v", got, tc)
			}
		})
	}
}

func TestParseLocal(t *testing.T) {
	for _, tc := range []struct {
		name   string
		line   string
		reason cmdline.Reason
		text   string // the decision's text, if checked
	}{
		// Linking: no -c or -S.
		{"Link", "gcc -o prog a.o b.o -lm", cmdline.ReasonLink, "no -c or -S: the command links"},
		{"CompileAndLink", "gcc -O2 x.c -o x", cmdline.ReasonLink, ""},
		// Preprocessing only.
		{"E", "gcc -E x.c -o x.i", cmdline.ReasonPreprocessOnly, "-E only preprocesses"},
		{"EWithC", "gcc -c -E x.c", cmdline.ReasonPreprocessOnly, ""},
		{"M", "gcc -M x.c", cmdline.ReasonPreprocessOnly, "-M/-MM only preprocesses"},
		{"MMMG", "gcc -MM -MG -c x.c", cmdline.ReasonPreprocessOnly, ""},
		// -M implies -E even with -MD: gcc writes the deps to -o's file.
		{"MWithMD", "gcc -c -M -MD x.c -o x.o", cmdline.ReasonPreprocessOnly, ""},
		// Standard input and output.
		{"Stdin", "gcc -c -", cmdline.ReasonStdin, "source from standard input"},
		{"StdinWithX", "gcc -x c -c - -o x.o", cmdline.ReasonStdin, ""},
		{"Stdout", "gcc -S x.c -o -", cmdline.ReasonStdout, "output to standard output"},
		// Inputs.
		{"SeveralSources", "gcc -c a.c b.c", cmdline.ReasonSeveralSources, "several input files"},
		{"NoSource", "gcc -c -O2", cmdline.ReasonNoSource, "no source file"},
		{"ObjectInput", "gcc -c x.o", cmdline.ReasonNotSource, "input x.o is not a source file"},
		{"UnknownExtension", "gcc -c x.txt", cmdline.ReasonNotSource, ""},
		{"LibraryWithC", "gcc -c x.c -lm", cmdline.ReasonNotSource, "-lm is a linker input"},
		{"MissingResponseFile", "gcc -c x.c @missing.rsp", cmdline.ReasonSeveralSources, ""},
		// Languages compiled locally.
		{"Assembler", "gcc -c x.s", cmdline.ReasonLanguage, "language assembler is compiled locally"},
		{"AssemblerWithCpp", "gcc -Wp,-MMD,arch/x86/entry/.entry_64.o.d -nostdinc -D__ASSEMBLY__ -c -o arch/x86/entry/entry_64.o arch/x86/entry/entry_64.S", cmdline.ReasonLanguage, ""},
		{"ObjC", "gcc -c x.m", cmdline.ReasonLanguage, ""},
		{"Fortran", "gfortran -c x.f90", cmdline.ReasonUnknownCompiler, "unknown compiler gfortran"},
		{"FortranThroughGCC", "gcc -c x.f90", cmdline.ReasonLanguage, ""},
		{"UnknownCompiler", "icc -c x.c", cmdline.ReasonUnknownCompiler, ""},
		// Conftests.
		{"AutoconfConftest", "gcc -c -g -O2 conftest.c", cmdline.ReasonConftest, "autoconf conftest conftest.c"},
		{"AutoconfConftestCXX", "g++ -c -g -O2 -DHAVE_X=1 conftest.cpp", cmdline.ReasonConftest, ""},
		{"AutoconfConftestOutput", "gcc -c probe.c -o conftest.o", cmdline.ReasonConftest, ""},
		{"AutoconfConftest2", "gcc -c conftest.c -o conftest2.o", cmdline.ReasonConftest, ""},
		{"AutoconfConftestLink", "gcc -o conftest -g -O2 conftest.c", cmdline.ReasonLink, ""},
		// Probes win over option reasons: the C fast path decides them
		// without the option table's families.
		{"AutoconfConftestNative", "gcc -c -march=native conftest.c", cmdline.ReasonConftest, ""},
		{"AutoconfConftestUnknownFlag", "gcc -c -frobnicate-harder=1 -Zfoo conftest.c", cmdline.ReasonConftest, ""},
		{"CMakeTryCompileScratch", "/usr/bin/cc -o CMakeFiles/cmTC_8f7e2.dir/CheckSymbolExists.c.o -c /build/CMakeFiles/CMakeScratch/TryCompile-AbCdEf/CheckSymbolExists.c", cmdline.ReasonConftest, "CMake try_compile CMakeFiles/cmTC_8f7e2.dir/CheckSymbolExists.c.o"},
		{"CMakeTryCompileTmp", "/usr/bin/c++ -std=c++17 -o src.cxx.o -c /b/CMakeFiles/CMakeTmp/src.cxx", cmdline.ReasonConftest, "CMake try_compile /b/CMakeFiles/CMakeTmp/src.cxx"},
		{"CMakeCompilerABI", "/usr/bin/cc -v -o CMakeFiles/cmTC_1.dir/CMakeCCompilerABI.c.o -c /usr/share/cmake-3.25/Modules/CMakeCCompilerABI.c", cmdline.ReasonQuery, ""},
		{"CMakeCompilerId", "cc -c CMakeCCompilerId.c", cmdline.ReasonConftest, "CMake compiler check CMakeCCompilerId.c"},
		{"MesonCheck", "cc /b/meson-private/tmpab12/testfile.c -o /b/meson-private/tmpab12/output.obj -c -D_FILE_OFFSET_BITS=64 -O0", cmdline.ReasonConftest, "Meson compiler check /b/meson-private/tmpab12/testfile.c"},
		{"ZlibConfigureTest", "gcc -O3 -c ztest4711.c", cmdline.ReasonConftest, "configure test ztest4711.c"},
		{"ZlibConfigureTestShared", "gcc -O3 -fPIC -c -o ztest4711.o ztest4711.c", cmdline.ReasonConftest, ""},
		// Host-dependent code generation.
		{"MarchNative", "gcc -c x.c -march=native", cmdline.ReasonNativeArch, "-march=native depends on the compiling machine"},
		{"MtuneNative", "gcc -O2 -mtune=native -c x.c", cmdline.ReasonNativeArch, ""},
		{"McpuNative", "clang -mcpu=native -c x.c", cmdline.ReasonNativeArch, ""},
		// Precompiled headers.
		{"CompileHeader", "gcc -c x.h", cmdline.ReasonPrecompiledHeader, "compiling header x.h makes a precompiled header"},
		{"CompileHeaderX", "g++ -x c++-header -c pch.hpp -o pch.hpp.gch", cmdline.ReasonPrecompiledHeader, ""},
		{"GXXDotH", "g++ -c x.h", cmdline.ReasonPrecompiledHeader, ""},
		{"IncludePCHClang", "clang -include-pch x.pch -c x.c", cmdline.ReasonPrecompiledHeader, ""},
		// Profiles and coverage.
		{"ProfileUse", "gcc -fprofile-use -c x.c", cmdline.ReasonProfile, "-fprofile-use uses profile or coverage files"},
		{"ProfileUsePath", "gcc -fprofile-use=/p/x.gcda -c x.c", cmdline.ReasonProfile, ""},
		{"AutoProfile", "gcc -fauto-profile=x.afdo -c x.c", cmdline.ReasonProfile, ""},
		{"SampleProfile", "clang -fprofile-sample-use=x.prof -c x.c", cmdline.ReasonProfile, ""},
		{"ProfileGenerate", "gcc -fprofile-generate -c x.c", cmdline.ReasonProfile, ""},
		{"Coverage", "gcc --coverage -c x.c", cmdline.ReasonProfile, "--coverage uses profile or coverage files"},
		{"ProfileArcs", "gcc -fprofile-arcs -ftest-coverage -c x.c", cmdline.ReasonProfile, ""},
		// Without the working-directory marker the remote compile would
		// record its own directory.
		{"NoWorkingDirectory", "gcc -g -fno-working-directory -c x.c", cmdline.ReasonWorkingDirectory, "-fno-working-directory would record the worker's directory in debug information"},
		// The toolchain reaching outside itself.
		{"Plugin", "gcc -fplugin=./myplugin.so -c x.c", cmdline.ReasonPlugin, "-fplugin=./myplugin.so loads a compiler plugin"},
		{"Specs", "gcc -specs=/usr/lib/rpm/redhat/redhat-hardened-cc1 -c x.c", cmdline.ReasonSpecs, ""},
		{"B", "gcc -B/opt/binutils/bin -c x.c", cmdline.ReasonToolchainPath, "-B/opt/binutils/bin points at programs outside the toolchain"},
		{"BSeparate", "gcc -B /opt/bin -c x.c", cmdline.ReasonToolchainPath, "-B /opt/bin points at programs outside the toolchain"},
		{"Wrapper", "gcc -wrapper gdb,--args -c x.c", cmdline.ReasonToolchainPath, ""},
		{"SaveTemps", "gcc -save-temps -c x.c", cmdline.ReasonSaveTemps, ""},
		{"SaveTempsObj", "gcc -save-temps=obj -c x.c", cmdline.ReasonSaveTemps, ""},
		// Extra outputs.
		{"Dump", "gcc -fdump-tree-all -c x.c", cmdline.ReasonExtraOutput, ""},
		{"StackUsage", "gcc -fstack-usage -c x.c", cmdline.ReasonExtraOutput, ""},
		{"SyntaxOnly", "gcc -fsyntax-only -c x.c", cmdline.ReasonSyntaxOnly, ""},
		{"AssemblerListing", "gcc -Wa,-adhln=x.lst -c x.c", cmdline.ReasonReadsFile, "assembler option -adhln=x.lst (from -Wa,-adhln=x.lst) may read or write files"},
		{"AssemblerInclude", "gcc -Xassembler -I -Xassembler dir -c x.c", cmdline.ReasonReadsFile, ""},
		{"Xclang", "clang -Xclang -load -Xclang x.so -c x.c", cmdline.ReasonReadsFile, ""},
		{"SanitizerIgnorelist", "clang -fsanitize=address -fsanitize-ignorelist=ignore.txt -c x.c", cmdline.ReasonReadsFile, ""},
		{"Modules", "g++ -std=c++20 -fmodules-ts -c x.cc", cmdline.ReasonModules, ""},
		// Queries.
		{"Version", "gcc --version", cmdline.ReasonQuery, "--version queries the compiler"},
		{"VersionAfterUnknown", "gcc -Zfoo --version", cmdline.ReasonQuery, "--version queries the compiler"},
		{"Verbose", "gcc -v -c x.c", cmdline.ReasonQuery, ""},
		{"PrintFileName", "gcc -print-file-name=libc.so", cmdline.ReasonQuery, ""},
		{"DumpMachine", "gcc -dumpmachine", cmdline.ReasonQuery, ""},
		// Unknown or malformed.
		{"UnknownFlag", "gcc -c x.c -qfoo", cmdline.ReasonUnknownFlag, "unknown flag -qfoo"},
		{"UnknownLongFlag", "gcc --frobnicate -c x.c", cmdline.ReasonUnknownFlag, ""},
		{"UnknownO", "gcc -Obogus -c x.c", cmdline.ReasonUnknownFlag, ""},
		{"CommentsFlag", "gcc -C -c x.c", cmdline.ReasonUnknownFlag, ""},
		{"UnknownWpOption", "gcc -Wp,-dD -c x.c", cmdline.ReasonUnknownFlag, "unknown preprocessor option -dD in -Wp,-dD"},
		{"UnknownLanguage", "gcc -x cobol -c x.cob", cmdline.ReasonUnknownLanguage, "unknown language -x cobol"},
		{"MissingO", "gcc -c x.c -o", cmdline.ReasonMissingArgument, "missing argument of -o"},
		{"MissingMF", "gcc -c x.c -MD -MF", cmdline.ReasonMissingArgument, "missing argument of -MF"},
		{"MissingX", "gcc -c x.c -x", cmdline.ReasonMissingArgument, "missing argument of -x"},
		{"MissingI", "gcc -c x.c -I", cmdline.ReasonMissingArgument, "missing argument of -I"},
		{"MissingInclude", "gcc -c x.c -include", cmdline.ReasonMissingArgument, ""},
		{"MissingWpMD", "gcc -c x.c -Wp,-MD", cmdline.ReasonMissingArgument, "missing file after -MD in -Wp,-MD"},
		{"TwoOutputs", "gcc -c x.c -o a.o -o b.o", cmdline.ReasonConflict, "-o given more than once"},
		{"WpAndMD", "gcc -MD -Wp,-MD,x.d -c x.c", cmdline.ReasonConflict, ""},
		{"EmptyArgument", "gcc -c x.c ''", cmdline.ReasonSeveralSources, ""},
		// Mode problems are reported before option problems.
		{"LinkBeatsNative", "gcc -march=native a.o -o prog", cmdline.ReasonLink, ""},
		// The first option problem in argument order wins.
		{"FirstOptionWins", "gcc -fplugin=a.so -march=native -c x.c", cmdline.ReasonPlugin, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv := parseLine(t, tc.line)
			d := inv.Decision
			if d.Remote || d.Reason != tc.reason {
				t.Fatalf("decision %+v (reason %s), want local %s", d, d.Reason, tc.reason)
			}
			if tc.text != "" && d.Text != tc.text {
				t.Errorf("text %q, want %q", d.Text, tc.text)
			}
			if d.String() != "local: "+d.Text {
				t.Errorf("String() = %q", d.String())
			}
		})
	}
}

func TestPrecompiledHeaderInclude(t *testing.T) {
	for _, tc := range []struct {
		name   string
		line   string
		exists []string // files that exist
		local  bool
	}{
		// CMake's precompiled headers: -include cmake_pch.h with a .gch next to it.
		{"NextToHeader", "g++ -include /b/CMakeFiles/app.dir/cmake_pch.hxx -c x.cc", []string{"/b/CMakeFiles/app.dir/cmake_pch.hxx.gch"}, true},
		// Found through -I.
		{"ThroughI", "gcc -Iinc -include pch.h -c x.c", []string{"inc/pch.h.gch"}, true},
		// A .gch directory counts as well; Exists reports it.
		{"ThroughIquote", "gcc -iquote q -include pch.h -c x.c", []string{"q/pch.h.gch"}, true},
		// No .gch anywhere.
		{"NoGch", "gcc -Iinc -include pch.h -c x.c", []string{"inc/pch.h"}, false},
		// An absolute -include is not searched for in include directories.
		{"AbsoluteNotSearched", "gcc -Iinc -include /abs/pch.h -c x.c", []string{"inc/abs/pch.h.gch"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var asked []string
			argv := cmdline.SplitResponseFile(tc.line)
			inv, err := cmdline.ParseWithOptions(argv[0], argv[1:], cmdline.Options{
				ReadFile: noFiles,
				Exists: func(p string) bool {
					asked = append(asked, p)
					for _, e := range tc.exists {
						if e == p {
							return true
						}
					}
					return false
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := !inv.Decision.Remote; got != tc.local {
				t.Fatalf("decision %v (asked %q), want local=%v", inv.Decision, asked, tc.local)
			}
			if tc.local && inv.Decision.Reason != cmdline.ReasonPrecompiledHeader {
				t.Fatalf("reason %s", inv.Decision.Reason)
			}
		})
	}
	t.Run("NoStatForLocalDecisions", func(t *testing.T) {
		// A command that is Local for another reason costs no stat.
		_, err := cmdline.ParseWithOptions("gcc", []string{"-include", "pch.h", "x.c"}, cmdline.Options{
			ReadFile: noFiles,
			Exists:   func(p string) bool { t.Fatalf("stat of %s", p); return false },
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

func TestFlagLists(t *testing.T) {
	inv := parseLine(t, `gcc -Wp,-MMD,.x.o.d -DA=1 -I inc -isystem /sys -include f.h -O2 -g -std=c11 -nostdinc -undef -MD -MT x.o -MF x.d -x c -c x.c -o x.o --sysroot=/sr -fPIC -Wall`)
	for _, c := range []struct {
		name string
		got  []string
		want []string
	}{
		{"PreprocessorFlags", inv.PreprocessorFlags, []string{"-DA=1", "-I", "inc", "-isystem", "/sys", "-include", "f.h", "--sysroot=/sr"}},
		{"CompileFlags", inv.CompileFlags, []string{"-O2", "-g", "-std=c11", "-nostdinc", "-undef", "-fPIC", "-Wall"}},
		{"DependencyFlags", inv.DependencyFlags, []string{"-Wp,-MMD,.x.o.d", "-MD", "-MT", "x.o", "-MF", "x.d"}},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	// This line has dependency flags both ways: gcc's behaviour is not
	// worth guessing.
	if inv.Decision.Reason != cmdline.ReasonConflict {
		t.Errorf("decision %v", inv.Decision)
	}
}

func TestKindOf(t *testing.T) {
	for _, tc := range []struct {
		path string
		want cmdline.CompilerKind
	}{
		{"gcc", cmdline.KindGCC},
		{"/usr/bin/gcc-12", cmdline.KindGCC},
		{"x86_64-linux-gnu-gcc-12", cmdline.KindGCC},
		{"g++", cmdline.KindGXX},
		{"/usr/bin/g++-12.2", cmdline.KindGXX},
		{"cc", cmdline.KindCC},
		{"c++", cmdline.KindCXX},
		{"clang", cmdline.KindClang},
		{"clang-15", cmdline.KindClang},
		{"clang++", cmdline.KindClangXX},
		{"/opt/llvm/bin/clang++-17", cmdline.KindClangXX},
		{"aarch64-linux-gnu-g++", cmdline.KindGXX},
		{"icc", cmdline.KindUnknown},
		{"mycc", cmdline.KindUnknown},
		{"gfortran", cmdline.KindUnknown},
		{"gcc-ar", cmdline.KindUnknown},
	} {
		if got := cmdline.KindOf(tc.path); got != tc.want {
			t.Errorf("KindOf(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}

func TestReasonNames(t *testing.T) {
	seen := map[string]bool{}
	for r := cmdline.ReasonNone; r.String() != "invalid"; r++ {
		if seen[r.String()] || r.String() == "" {
			t.Fatalf("reason %d has name %q, used before", r, r)
		}
		seen[r.String()] = true
	}
	if len(seen) < 20 {
		t.Fatalf("only %d reasons", len(seen))
	}
}
