package cmdline

import (
	"sort"
	"strings"
)

// optKind says how an option takes its argument.
type optKind uint8

const (
	// kindFlag: the option is exactly its name and takes no argument.
	kindFlag optKind = iota
	// kindJoinedOrSeparate: "-Ifoo" or "-I foo".
	kindJoinedOrSeparate
	// kindSeparate: the argument is always the next token ("-Xlinker x").
	kindSeparate
	// kindJoined: the argument is the rest of the token ("-std=c11"); the
	// name is matched as a prefix.
	kindJoined
)

// class says where an argument goes when the command is split into a local
// preprocess and a remote compile.
type class uint8

const (
	// classCommon: both steps (code generation, warnings, -std, -O: these
	// also set predefined macros, so the preprocessor must see them).
	classCommon class = iota
	// classPre: preprocessing only (-D, -I, -include, ...). Dropped from
	// the remote compile, where they would name host paths.
	classPre
	// classDep: dependency-file output (-MD, -MF, ...). Only the local
	// preprocess writes the .d file.
	classDep
	// classMode: -c or -S; replaced by -E in the preprocess step.
	classMode
	// classOutput: -o; replaced in both steps.
	classOutput
	// classLang: -x; kept for the preprocess, replaced for the compile.
	classLang
	// classInput: the source file.
	classInput
)

// option is one entry of the table of known options.
type option struct {
	name  string
	kind  optKind
	class class
	// path is true when the argument is a file or directory that Rebase
	// may make relative.
	path bool
	// local, if not ReasonNone, makes the invocation Local.
	local Reason
}

// The table of known options. Options that need more than a class (the
// mode, -o, -x, dependency flags, -Wp, ...) are interpreted in
// parser.apply by name. The -f, -m, -W, -g and -O families are not listed
// here; classifyFamily decides them.
var optionTable = []option{
	// Mode and output.
	{name: "-c", class: classMode},
	{name: "-S", class: classMode},
	{name: "-E", class: classMode, local: ReasonPreprocessOnly},
	{name: "-o", kind: kindJoinedOrSeparate, class: classOutput, path: true},
	{name: "-x", kind: kindJoinedOrSeparate, class: classLang},

	// Preprocessor.
	{name: "-D", kind: kindJoinedOrSeparate, class: classPre},
	{name: "-U", kind: kindJoinedOrSeparate, class: classPre},
	{name: "-A", kind: kindJoinedOrSeparate, class: classPre},
	{name: "-I", kind: kindJoinedOrSeparate, class: classPre, path: true},
	{name: "-iquote", kind: kindJoinedOrSeparate, class: classPre, path: true},
	{name: "-isystem", kind: kindJoinedOrSeparate, class: classPre, path: true},
	{name: "-idirafter", kind: kindJoinedOrSeparate, class: classPre, path: true},
	{name: "-include", kind: kindJoinedOrSeparate, class: classPre, path: true},
	{name: "-imacros", kind: kindJoinedOrSeparate, class: classPre, path: true},
	{name: "-isysroot", kind: kindJoinedOrSeparate, class: classPre, path: true},
	{name: "-iprefix", kind: kindJoinedOrSeparate, class: classPre, path: true},
	{name: "-iwithprefix", kind: kindJoinedOrSeparate, class: classPre},
	{name: "-iwithprefixbefore", kind: kindJoinedOrSeparate, class: classPre},
	{name: "-imultilib", kind: kindJoinedOrSeparate, class: classPre},
	{name: "-imultiarch", kind: kindJoinedOrSeparate, class: classPre},
	{name: "-cxx-isystem", kind: kindJoinedOrSeparate, class: classPre, path: true},
	{name: "--sysroot", kind: kindSeparate, class: classPre, path: true},
	{name: "--sysroot=", kind: kindJoined, class: classPre, path: true},
	{name: "-Xpreprocessor", kind: kindSeparate, class: classPre},
	{name: "-Wp,", kind: kindJoined, class: classPre},
	{name: "-nostdlibinc", class: classPre},
	{name: "-nobuiltininc", class: classPre},
	{name: "-I-", class: classPre},
	// These change preprocessing but gcc records them in DW_AT_producer
	// (they do not start with -D, -U, -I, -i or -M), so the remote compile
	// keeps them to produce the same object; they are no-ops there.
	{name: "-nostdinc", class: classCommon},
	{name: "-nostdinc++", class: classCommon},
	{name: "-undef", class: classCommon},
	{name: "-trigraphs", class: classCommon},
	{name: "-H", class: classCommon},

	// Dependency output.
	{name: "-M", class: classDep},
	{name: "-MM", class: classDep},
	{name: "-MD", class: classDep},
	{name: "-MMD", class: classDep},
	{name: "-MP", class: classDep},
	{name: "-MG", class: classDep},
	{name: "-MF", kind: kindJoinedOrSeparate, class: classDep},
	{name: "-MT", kind: kindJoinedOrSeparate, class: classDep},
	{name: "-MQ", kind: kindJoinedOrSeparate, class: classDep},

	// Language standard and dialect.
	{name: "-std=", kind: kindJoined},
	{name: "--std=", kind: kindJoined},
	{name: "--std", kind: kindSeparate},
	{name: "-ansi"},
	{name: "-pedantic"},
	{name: "-pedantic-errors"},
	{name: "--pedantic"},
	{name: "-w"},
	{name: "-pthread"},
	{name: "-pipe"},
	{name: "-p"},
	{name: "-pg"},
	{name: "--param", kind: kindSeparate},
	{name: "--param=", kind: kindJoined},
	{name: "-Xassembler", kind: kindSeparate},
	{name: "-Wa,", kind: kindJoined},

	// clang spellings.
	{name: "--target=", kind: kindJoined},
	{name: "-target", kind: kindSeparate},
	{name: "-stdlib=", kind: kindJoined},
	{name: "-Qunused-arguments"},
	{name: "-integrated-as"},
	{name: "-no-integrated-as"},
	{name: "-Xclang", kind: kindSeparate, local: ReasonReadsFile},
	{name: "-resource-dir", kind: kindJoinedOrSeparate, local: ReasonToolchainPath},
	{name: "--gcc-toolchain=", kind: kindJoined, local: ReasonToolchainPath},
	{name: "-gcc-toolchain", kind: kindSeparate, local: ReasonToolchainPath},
	{name: "--config", kind: kindJoinedOrSeparate, local: ReasonSpecs},
	{name: "-include-pch", kind: kindSeparate, local: ReasonPrecompiledHeader},

	// Linking. Ignored by gcc when it does not link, so harmless with -c.
	{name: "-L", kind: kindJoinedOrSeparate, path: true},
	{name: "-Wl,", kind: kindJoined},
	{name: "-Xlinker", kind: kindSeparate},
	{name: "-u", kind: kindJoinedOrSeparate},
	{name: "-shared"},
	{name: "-static"},
	{name: "-static-pie"},
	{name: "-static-libgcc"},
	{name: "-static-libstdc++"},
	{name: "-shared-libgcc"},
	{name: "-rdynamic"},
	{name: "-pie"},
	{name: "-no-pie"},
	{name: "-s"},
	{name: "-nostdlib"},
	{name: "-nostartfiles"},
	{name: "-nodefaultlibs"},
	{name: "-l", kind: kindJoinedOrSeparate, local: ReasonNotSource},
	{name: "-T", kind: kindJoinedOrSeparate, local: ReasonNotSource},

	// Options that make the invocation Local.
	{name: "-v", local: ReasonQuery},
	{name: "-###", local: ReasonQuery},
	{name: "--version", local: ReasonQuery},
	{name: "--help", local: ReasonQuery},
	{name: "--help=", kind: kindJoined, local: ReasonQuery},
	{name: "--target-help", local: ReasonQuery},
	{name: "-dumpversion", local: ReasonQuery},
	{name: "-dumpfullversion", local: ReasonQuery},
	{name: "-dumpmachine", local: ReasonQuery},
	{name: "-dumpspecs", local: ReasonQuery},
	{name: "-print-", kind: kindJoined, local: ReasonQuery},
	{name: "--print-", kind: kindJoined, local: ReasonQuery},
	{name: "-dumpbase", kind: kindSeparate, local: ReasonExtraOutput},
	{name: "-dumpbase-ext", kind: kindSeparate, local: ReasonExtraOutput},
	{name: "-dumpdir", kind: kindSeparate, local: ReasonExtraOutput},
	{name: "-aux-info", kind: kindSeparate, local: ReasonExtraOutput},
	{name: "-time", local: ReasonExtraOutput},
	{name: "-time=", kind: kindJoined, local: ReasonExtraOutput},
	{name: "-save-temps", local: ReasonSaveTemps},
	{name: "-save-temps=", kind: kindJoined, local: ReasonSaveTemps},
	{name: "--save-temps", local: ReasonSaveTemps},
	{name: "-B", kind: kindJoinedOrSeparate, local: ReasonToolchainPath},
	{name: "-wrapper", kind: kindSeparate, local: ReasonToolchainPath},
	{name: "-no-integrated-cpp", local: ReasonToolchainPath},
	{name: "-specs=", kind: kindJoined, local: ReasonSpecs},
	{name: "--specs=", kind: kindJoined, local: ReasonSpecs},
	{name: "-specs", kind: kindSeparate, local: ReasonSpecs},
	{name: "--specs", kind: kindSeparate, local: ReasonSpecs},
	{name: "--coverage", local: ReasonProfile},
	{name: "-coverage", local: ReasonProfile},
	{name: "-iplugindir=", kind: kindJoined, local: ReasonPlugin},
}

// exactOptions indexes optionTable by name for the options whose whole
// token is the name (flags, and the separate spelling of the others).
var exactOptions = func() map[string]*option {
	m := make(map[string]*option, len(optionTable))
	for i := range optionTable {
		o := &optionTable[i]
		if o.kind != kindJoined {
			m[o.name] = o
		}
	}
	return m
}()

// prefixOptions lists the options that accept a joined argument, grouped
// by their first two characters, longest name first within a group, so
// that "-iwithprefixbefore" wins over "-iwithprefix" and "-MF" is tried
// before shorter names.
var prefixOptions = func() map[string][]*option {
	m := map[string][]*option{}
	for i := range optionTable {
		o := &optionTable[i]
		if o.kind == kindJoined || o.kind == kindJoinedOrSeparate {
			m[o.name[:2]] = append(m[o.name[:2]], o)
		}
	}
	for _, l := range m {
		sort.SliceStable(l, func(i, j int) bool { return len(l[i].name) > len(l[j].name) })
	}
	return m
}()

// lookupPrefix returns the longest option with a joined form that prefixes
// tok, and the joined argument.
func lookupPrefix(tok string) (*option, string) {
	if len(tok) < 2 {
		return nil, ""
	}
	for _, o := range prefixOptions[tok[:2]] {
		if len(tok) > len(o.name) && strings.HasPrefix(tok, o.name) {
			return o, tok[len(o.name):]
		}
		if o.kind == kindJoined && tok == o.name {
			return o, "" // "-std=" with an empty value: gcc reports it
		}
	}
	return nil, ""
}

// fDeny lists -f options (by prefix, after removing "no-") that make an
// invocation Local. Every other -f option is accepted: gcc rejects
// misspelled ones itself, identically on both sides, and this list holds
// those that read or write files beyond the source and the object, or
// depend on the host.
var fDeny = []struct {
	prefix string
	reason Reason
}{
	{"profile-use", ReasonProfile},
	{"auto-profile", ReasonProfile},
	{"profile-sample-use", ReasonProfile},
	{"profile-instr-use", ReasonProfile},
	{"profile-remapping-file", ReasonProfile},
	{"profile-list", ReasonProfile},
	{"profile-dir", ReasonProfile},
	{"profile-generate", ReasonProfile},
	{"profile-instr-generate", ReasonProfile},
	{"cs-profile-generate", ReasonProfile},
	{"profile-arcs", ReasonProfile},
	{"profile-values", ReasonProfile},
	{"profile-info-section", ReasonProfile},
	{"test-coverage", ReasonProfile},
	{"condition-coverage", ReasonProfile},
	{"create-profile", ReasonProfile},
	{"plugin", ReasonPlugin},
	{"dump-", ReasonExtraOutput},
	{"stack-usage", ReasonExtraOutput},
	{"callgraph-info", ReasonExtraOutput},
	{"save-optimization-record", ReasonExtraOutput},
	{"opt-info", ReasonExtraOutput},
	{"time-trace", ReasonExtraOutput},
	{"compare-debug", ReasonExtraOutput},
	{"crash-diagnostics-dir", ReasonExtraOutput},
	{"record-command-line", ReasonExtraOutput},
	{"syntax-only", ReasonSyntaxOnly},
	{"modules", ReasonModules},
	{"module-", ReasonModules},
	{"implicit-modules", ReasonModules},
	{"prebuilt-module-path", ReasonModules},
	{"pch-preprocess", ReasonPrecompiledHeader},
	{"preprocessed", ReasonUnknownFlag},
	{"directives-only", ReasonUnknownFlag},
	{"input-charset", ReasonUnknownFlag},
	{"offload", ReasonToolchainPath},
	{"sanitize-blacklist", ReasonReadsFile},
	{"sanitize-ignorelist", ReasonReadsFile},
	{"sanitize-system-ignorelist", ReasonReadsFile},
	{"sanitize-coverage-allowlist", ReasonReadsFile},
	{"sanitize-coverage-blocklist", ReasonReadsFile},
	{"xray-always-instrument", ReasonReadsFile},
	{"xray-never-instrument", ReasonReadsFile},
	{"xray-attr-list", ReasonReadsFile},
	{"embed-dir", ReasonReadsFile},
}

// assemblerAllow lists the assembler options (-Wa, and -Xassembler) known
// to read and write nothing but the assembler's input and output. Others,
// -I (search path for .include) and -a (listing files) among them, make
// the invocation Local. A trailing '*' matches any rest.
var assemblerAllow = []string{
	"--noexecstack", "--execstack", "--64", "--32", "--x32",
	"-m*", "--compress-debug-sections*", "--nocompress-debug-sections",
	"--fatal-warnings", "--warn", "--no-warn", "-W", "-g", "--gen-debug",
	"--gdwarf*", "-gdwarf*", "--strip-local-absolute", "--no-pad-sections",
	"--generate-missing-build-notes=*", "--debug-prefix-map=*",
	"--elf-stt-common=*", "--size-check=*", "--sectname-subst",
	"-mrelax-relocations=*", "--reduce-memory-overheads", "-O*",
}

// assemblerOptionOK reports whether the assembler option a is in
// assemblerAllow.
func assemblerOptionOK(a string) bool {
	for _, p := range assemblerAllow {
		if strings.HasSuffix(p, "*") {
			if strings.HasPrefix(a, p[:len(p)-1]) {
				return true
			}
		} else if a == p {
			return true
		}
	}
	return false
}

// classifyFamily decides an option of the -f, -m, -W, -g or -O families,
// which are open-ended: it returns whether tok belongs to one, and the
// Reason that makes it Local (ReasonNone if it is fine). -Wa, -Wp and -Wl
// are in the option table and never reach here.
func classifyFamily(tok string) (known bool, r Reason) {
	if len(tok) < 2 {
		return false, ReasonNone
	}
	switch tok[1] {
	case 'f':
		if len(tok) == 2 {
			return false, ReasonNone
		}
		if tok == "-fno-working-directory" {
			return true, ReasonWorkingDirectory
		}
		name := strings.TrimPrefix(tok[2:], "no-")
		for _, d := range fDeny {
			if strings.HasPrefix(name, d.prefix) {
				return true, d.reason
			}
		}
		return true, ReasonNone
	case 'm':
		if len(tok) == 2 {
			return false, ReasonNone
		}
		for _, p := range []string{"-march=", "-mtune=", "-mcpu="} {
			if strings.HasPrefix(tok, p) && tok[len(p):] == "native" {
				return true, ReasonNativeArch
			}
		}
		return true, ReasonNone
	case 'W':
		// -W, -Wall, -Wno-foo, -Werror=bar: diagnostics only.
		return true, ReasonNone
	case 'g':
		// -g, -g3, -ggdb, -gdwarf-4, -gz, -gsplit-dwarf, ...
		return true, ReasonNone
	case 'O':
		switch tok[2:] {
		case "", "0", "1", "2", "3", "s", "z", "g", "fast":
			return true, ReasonNone
		}
		return false, ReasonNone
	}
	return false, ReasonNone
}
