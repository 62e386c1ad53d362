package cmdline

// Reason says why an invocation runs where it does. The zero value,
// ReasonNone, goes with Remote decisions; every other value makes the
// invocation Local. Reasons are stable identifiers: the wrapper's
// statistics count local runs by Reason.String().
type Reason uint8

// The reasons, in the order Parse checks them (the first one that applies
// is reported).
const (
	// ReasonNone: nothing prevents a remote compile.
	ReasonNone Reason = iota
	// ReasonUnknownCompiler: the program is not gcc, g++, cc, c++, clang
	// or clang++ (possibly with a target prefix or version suffix).
	ReasonUnknownCompiler
	// ReasonQuery: the command asks the compiler something (-v, --version,
	// -print-*, -dump*, -###, --help) instead of compiling.
	ReasonQuery
	// ReasonPreprocessOnly: -E, -M or -MM (-M implies -E even with -MD:
	// gcc then writes the dependencies to -o's file and no object).
	ReasonPreprocessOnly
	// ReasonLink: neither -c nor -S, so the command links.
	ReasonLink
	// ReasonMissingArgument: an option that takes an argument is last.
	ReasonMissingArgument
	// ReasonUnknownFlag: an option not in the parser's table. Unknown means
	// "maybe reads or writes files we do not know about".
	ReasonUnknownFlag
	// ReasonUnknownLanguage: -x names a language gcc does not know.
	ReasonUnknownLanguage
	// ReasonConflict: the command line is ambiguous (-o twice, dependency
	// flags both on the driver and through -Wp).
	ReasonConflict
	// ReasonNativeArch: -march=native, -mtune=native or -mcpu=native: the
	// result depends on the machine that compiles.
	ReasonNativeArch
	// ReasonWorkingDirectory: -fno-working-directory keeps -E from
	// recording the directory, so under -g the object would name the
	// worker's directory instead of the client's.
	ReasonWorkingDirectory
	// ReasonProfile: profile-guided optimization or coverage: the compile
	// reads profile data, or writes .gcno notes, or embeds the object's
	// absolute directory for the run-time .gcda files.
	ReasonProfile
	// ReasonPlugin: -fplugin loads a shared object from the host.
	ReasonPlugin
	// ReasonSpecs: -specs= changes the driver's programs and options.
	ReasonSpecs
	// ReasonToolchainPath: -B, -wrapper, --gcc-toolchain and the like point
	// the driver at programs outside the captured toolchain.
	ReasonToolchainPath
	// ReasonSaveTemps: -save-temps writes intermediate files.
	ReasonSaveTemps
	// ReasonExtraOutput: the compile writes files besides the object and
	// the .dwo (-fdump-*, -fstack-usage, -fcallgraph-info, -aux-info, ...).
	ReasonExtraOutput
	// ReasonReadsFile: an option makes the compile proper read a file
	// (-fsanitize-ignorelist=, -Wa,-I, -Xclang, ...).
	ReasonReadsFile
	// ReasonModules: C++ modules read and write module interface files.
	ReasonModules
	// ReasonSyntaxOnly: -fsyntax-only produces no output worth shipping.
	ReasonSyntaxOnly
	// ReasonStdin: the source is standard input ("-").
	ReasonStdin
	// ReasonStdout: the output is standard output ("-o -").
	ReasonStdout
	// ReasonNoSource: no input file.
	ReasonNoSource
	// ReasonSeveralSources: more than one input file.
	ReasonSeveralSources
	// ReasonNotSource: an input is not a source file (object, archive,
	// -l library, unknown extension, a missing @file).
	ReasonNotSource
	// ReasonLanguage: a language kiln does not compile remotely (assembler,
	// Objective-C, Fortran, ...).
	ReasonLanguage
	// ReasonPrecompiledHeader: the command compiles a header into a .gch,
	// or -include names a header that has a .gch next to it.
	ReasonPrecompiledHeader
	// ReasonConftest: a configure-time probe (autoconf conftest, CMake
	// try_compile, Meson compiler check): tiny, sequential, and faster
	// locally than the round trip.
	ReasonConftest
	numReasons
)

var reasonNames = [numReasons]string{
	ReasonNone:              "none",
	ReasonUnknownCompiler:   "unknown_compiler",
	ReasonQuery:             "query",
	ReasonPreprocessOnly:    "preprocess_only",
	ReasonLink:              "link",
	ReasonMissingArgument:   "missing_argument",
	ReasonUnknownFlag:       "unknown_flag",
	ReasonUnknownLanguage:   "unknown_language",
	ReasonConflict:          "conflict",
	ReasonNativeArch:        "native_arch",
	ReasonWorkingDirectory:  "working_directory",
	ReasonProfile:           "profile",
	ReasonPlugin:            "plugin",
	ReasonSpecs:             "specs",
	ReasonToolchainPath:     "toolchain_path",
	ReasonSaveTemps:         "save_temps",
	ReasonExtraOutput:       "extra_output",
	ReasonReadsFile:         "reads_file",
	ReasonModules:           "modules",
	ReasonSyntaxOnly:        "syntax_only",
	ReasonStdin:             "stdin",
	ReasonStdout:            "stdout",
	ReasonNoSource:          "no_source",
	ReasonSeveralSources:    "several_sources",
	ReasonNotSource:         "not_source",
	ReasonLanguage:          "language",
	ReasonPrecompiledHeader: "precompiled_header",
	ReasonConftest:          "conftest",
}

// String returns the reason's stable snake_case name, as used in stats.
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "invalid"
}

// Decision says whether an invocation is compiled remotely and, if not,
// why. The zero value is not meaningful; Parse always sets one.
type Decision struct {
	// Remote is true when the compile can run on the cluster. Then the
	// Invocation has exactly one Source, a remotable Language and an
	// Output.
	Remote bool
	// Reason is ReasonNone for Remote decisions.
	Reason Reason
	// Text explains a Local decision for humans and logs, naming the
	// argument involved: "unknown flag -frobnicate".
	Text string
}

// String is "remote" or "local: " followed by Text.
func (d Decision) String() string {
	if d.Remote {
		return "remote"
	}
	return "local: " + d.Text
}

// local builds a Local decision.
func local(r Reason, text string) Decision { return Decision{Reason: r, Text: text} }
