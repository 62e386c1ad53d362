package cmdline

import (
	"os"
	"path"
	"path/filepath"
	"strings"
)

// CompilerKind is the family of a compiler driver, from its file name.
type CompilerKind string

// The compiler drivers kiln understands. cc and c++ are the system
// compilers (gcc or clang behind alternatives); they take gcc's options.
const (
	KindUnknown CompilerKind = ""
	KindGCC     CompilerKind = "gcc"
	KindGXX     CompilerKind = "g++"
	KindClang   CompilerKind = "clang"
	KindClangXX CompilerKind = "clang++"
	KindCC      CompilerKind = "cc"
	KindCXX     CompilerKind = "c++"
)

// IsCXX reports whether the driver compiles .c, .i and .h files as C++
// (g++, c++ and clang++ do).
func (k CompilerKind) IsCXX() bool { return k == KindGXX || k == KindCXX || k == KindClangXX }

// KindOf returns the kind of the compiler named by path: its base name,
// without a version suffix ("-12"), must be gcc, g++, cc, c++, clang or
// clang++, possibly after a target prefix ending in '-'
// ("x86_64-linux-gnu-gcc-12").
func KindOf(path string) CompilerKind {
	base := trimVersion(filepath.Base(path))
	// clang++ before g++ and c++ (it ends with both); gcc before cc.
	for _, k := range []CompilerKind{KindClangXX, KindClang, KindGXX, KindCXX, KindGCC, KindCC} {
		if base == string(k) || strings.HasSuffix(base, "-"+string(k)) {
			return k
		}
	}
	return KindUnknown
}

// trimVersion removes the version that distributions append to driver
// names: gcc-12, clang-15, g++-12.2.
func trimVersion(name string) string {
	i := strings.LastIndexByte(name, '-')
	if i < 0 || i+1 == len(name) || name[i+1] < '0' || name[i+1] > '9' {
		return name
	}
	for _, c := range name[i+1:] {
		if (c < '0' || c > '9') && c != '.' {
			return name
		}
	}
	return name[:i]
}

// Mode is the last stage the driver runs.
type Mode uint8

// The modes. gcc stops at the earliest stage asked for: -E wins over -S,
// which wins over -c.
const (
	// ModeLink: no -c, -S or -E.
	ModeLink Mode = iota
	// ModeCompile: -c, an object file.
	ModeCompile
	// ModeAssembly: -S, an assembler file.
	ModeAssembly
	// ModePreprocess: -E, -M or -MM (which imply -E, even with -MD).
	ModePreprocess
)

// String returns the option that selects the mode ("" for linking).
func (m Mode) String() string {
	switch m {
	case ModeCompile:
		return "-c"
	case ModeAssembly:
		return "-S"
	case ModePreprocess:
		return "-E"
	}
	return ""
}

// arg is one parsed argument, possibly two tokens ("-I dir").
type arg struct {
	// opt is the option's name as in the table ("-I", "-std="), or, for
	// family options (-f..., -W...), the whole token; "" for an input.
	opt string
	// value is the option's argument, or the input file name.
	value string
	// form says how to write the argument back.
	form  form
	class class
	// path is true when value is a path that Rebase may rewrite.
	path bool
}

// form is how an argument was spelled.
type form uint8

const (
	formFlag     form = iota // "-Wall": opt only
	formJoined               // "-Idir": opt and value in one token
	formSeparate             // "-I" "dir"
	formInput                // "foo.c": value only
)

// appendTo writes the argument's tokens to out.
func (a arg) appendTo(out []string) []string {
	switch a.form {
	case formJoined:
		return append(out, a.opt+a.value)
	case formSeparate:
		return append(out, a.opt, a.value)
	case formInput:
		return append(out, a.value)
	}
	return append(out, a.opt)
}

// Invocation is one parsed compiler command line. Parse fills every field;
// treat it as read-only (Rebase returns a modified copy).
type Invocation struct {
	// Compiler is the program as given to Parse.
	Compiler string
	// Kind is the driver family, from Compiler's name.
	Kind CompilerKind
	// Args are the arguments after response-file expansion, without the
	// program name.
	Args []string

	// Mode is -c, -S, -E or linking.
	Mode Mode
	// Source is the source file as written, when there is exactly one
	// input; "" otherwise.
	Source string
	// Language is Source's language, from the -x in effect where it
	// appears or else from its extension (g++ and clang++ turn C into
	// C++).
	Language Language
	// Output is the file -c or -S writes: -o's argument, or else the base
	// name of Source with .o (for -c) or .s (for -S), in the working
	// directory. "" when there is no single source.
	Output string
	// DepFile is the dependency file the compile writes, "" if none: -MF's
	// argument; with -MD or -MMD alone, Output with its extension replaced
	// by .d when -o is given (gcc's %.d%* rule: the extension starts at
	// the last '.' of the base name, even a leading one, so "-o .x" gives
	// ".d"), or else Source's base name with .d in the working directory;
	// with -Wp,-MD,file or -Wp,-MMD,file, that file. Preprocessed input
	// (.i, .ii) never gets one: gcc does not run the preprocessor then.
	DepFile string
	// DwoFile is the split-DWARF file that -c with -gsplit-dwarf writes,
	// "" if none: Output with its extension replaced by .dwo (here a
	// leading '.' of the base name does not start an extension: "-o .x"
	// gives ".x.dwo"), or Source's base name with .dwo in the working
	// directory when there is no -o. gcc 12 writes it even without -g.
	// Producing it needs objcopy on the worker.
	DwoFile string

	// PreprocessorFlags are the options only the preprocessor uses (-D,
	// -U, -I, -iquote, -isystem, -idirafter, -include, -imacros,
	// -isysroot, --sysroot, -Wp, -Xpreprocessor, ...), as tokens.
	PreprocessorFlags []string
	// CompileFlags are the options both steps use (code generation,
	// warnings, -std=, -O, -f, -m, -g, ...), as tokens; -x, -o, -c and -S
	// are not among them. In a rebased invocation the first one is the
	// -fdebug-prefix-map Rebase added, which RemoteCompileArgs leaves out.
	CompileFlags []string
	// DependencyFlags are -MD, -MMD, -MF, -MT, -MQ, -MP, -MG, as tokens.
	DependencyFlags []string

	// Decision says whether to compile remotely, and why not.
	Decision Decision

	args []arg
	// explicitOutput is -o's argument, if hasOutput.
	explicitOutput string
	hasOutput      bool
	// baseDir is Rebase's base directory, "" if not rebased. Then args[0]
	// is the -fdebug-prefix-map Rebase added.
	baseDir string
	// depTargetDefault is the dependency target gcc's driver adds (-MQ)
	// when -MD or -MMD come without -MT or -MQ: -o's argument as
	// originally written (Rebase keeps it), or "" without -o.
	depTargetDefault string
	// depDriver: -MD or -MMD on the driver; depMF: -MF given; depTarget:
	// -MT or -MQ given. Only these make PreprocessArgs add options.
	depDriver, depMF, depTarget bool
}

// Options are the injected functions Parse uses. Nil fields get the
// defaults named below.
type Options struct {
	// ReadFile reads a response file. A missing file must be reported
	// with an error satisfying errors.Is(err, fs.ErrNotExist). Default:
	// os.ReadFile.
	ReadFile func(name string) ([]byte, error)
	// Exists reports whether a file or directory exists; Parse calls it
	// only for -include arguments of an otherwise remote invocation, to
	// look for a precompiled header next to the header. Default: os.Stat.
	Exists func(name string) bool
}

// Parse parses the command line of compiler (the program name or path;
// args excludes it) and decides whether it can compile remotely. It
// expands response files with readFile (os.ReadFile when nil) and checks
// for precompiled headers with os.Stat; ParseWithOptions injects both.
//
// Parse never fails on a malformed command line: that is a Local decision
// (gcc will report it). It fails only when response files cannot be
// expanded (a loop, too deep, unreadable); the caller then runs the
// command locally too.
//
// The decision is cheap: no hashing, no network, no process; the only
// I/O is reading response files and, for remote candidates with -include,
// a stat per include directory.
func Parse(compiler string, args []string, readFile func(string) ([]byte, error)) (*Invocation, error) {
	return ParseWithOptions(compiler, args, Options{ReadFile: readFile})
}

// ParseWithOptions is Parse with every dependency injected.
func ParseWithOptions(compiler string, args []string, opts Options) (*Invocation, error) {
	if opts.ReadFile == nil {
		opts.ReadFile = os.ReadFile
	}
	if opts.Exists == nil {
		opts.Exists = func(name string) bool { _, err := os.Stat(name); return err == nil }
	}
	expanded, err := expandResponseFiles(args, opts.ReadFile)
	if err != nil {
		return nil, err
	}
	p := &parser{
		inv: &Invocation{Compiler: compiler, Kind: KindOf(compiler), Args: expanded},
	}
	p.parse(expanded)
	p.finish(opts.Exists)
	return p.inv, nil
}

// parser holds the state of one Parse.
type parser struct {
	inv *Invocation

	// first is the first Local decision met while scanning options, in
	// argument order.
	first    Decision
	hasFirst bool
	// query is the first option that asks the compiler something; it
	// wins over every other reason.
	query    Decision
	hasQuery bool

	lang     Language // -x in effect; "" for none
	c, s, e  bool     // -c, -S, -E seen
	m, mm    bool     // -M, -MM
	md       bool     // -MD or -MMD on the driver
	wpDep    string   // file of -Wp,-MD,file or -Wp,-MMD,file
	mf       string
	outputs  int // number of -o
	split    bool
	inputs   []int // indexes in inv.args of the inputs
	srcLangs []Language
	includes []string // -include arguments
	quoteDir []string // -iquote, -I and -isystem directories, in order
}

// localIf records a Local decision if it is the first one.
func (p *parser) localIf(r Reason, text string) {
	if !p.hasFirst {
		p.first = local(r, text)
		p.hasFirst = true
	}
}

func (p *parser) parse(toks []string) {
	for i := 0; i < len(toks); i++ {
		tok := toks[i]
		if tok == "" {
			// gcc treats an empty argument as an input file named "".
			p.addInput(tok)
			continue
		}
		if tok[0] != '-' || tok == "-" {
			p.addInput(tok)
			continue
		}
		if o := exactOptions[tok]; o != nil {
			switch o.kind {
			case kindFlag:
				p.apply(o, arg{opt: tok, form: formFlag, class: o.class})
			default: // separate, or joined-or-separate written apart
				if i+1 >= len(toks) {
					p.localIf(ReasonMissingArgument, "missing argument of "+tok)
					continue
				}
				i++
				p.apply(o, arg{opt: tok, value: toks[i], form: formSeparate, class: o.class, path: o.path})
			}
			continue
		}
		if o, v := lookupPrefix(tok); o != nil {
			p.apply(o, arg{opt: o.name, value: v, form: formJoined, class: o.class, path: o.path})
			continue
		}
		if known, r := classifyFamily(tok); known {
			if r != ReasonNone {
				p.localIf(r, reasonText(r, tok))
			}
			p.family(tok)
			continue
		}
		p.localIf(ReasonUnknownFlag, "unknown flag "+tok)
		// Keep it, so that Args and the flag lists stay complete.
		p.inv.args = append(p.inv.args, arg{opt: tok, form: formFlag})
	}
}

// reasonText describes a Local decision caused by option tok.
func reasonText(r Reason, tok string) string {
	switch r {
	case ReasonNativeArch:
		return tok + " depends on the compiling machine"
	case ReasonProfile:
		return tok + " uses profile or coverage files"
	case ReasonPlugin:
		return tok + " loads a compiler plugin"
	case ReasonSpecs:
		return tok + " changes the driver's specs"
	case ReasonToolchainPath:
		return tok + " points at programs outside the toolchain"
	case ReasonSaveTemps:
		return tok + " keeps intermediate files"
	case ReasonExtraOutput:
		return tok + " writes extra output files"
	case ReasonReadsFile:
		return tok + " reads a file during the compile"
	case ReasonModules:
		return tok + " uses C++ modules"
	case ReasonSyntaxOnly:
		return tok + " produces no object"
	case ReasonQuery:
		return tok + " queries the compiler"
	case ReasonWorkingDirectory:
		return tok + " would record the worker's directory in debug information"
	case ReasonPreprocessOnly:
		return tok + " only preprocesses"
	case ReasonPrecompiledHeader:
		return tok + " uses a precompiled header"
	case ReasonNotSource:
		return tok + " is a linker input"
	}
	return "unknown flag " + tok
}

// family records an option of the open-ended families.
func (p *parser) family(tok string) {
	switch {
	case tok == "-gsplit-dwarf" || tok == "-gsplit-dwarf=split":
		p.split = true
	case tok == "-gno-split-dwarf" || tok == "-gsplit-dwarf=single":
		p.split = false
	}
	p.inv.args = append(p.inv.args, arg{opt: tok, form: formFlag, class: classCommon})
}

// addInput records an input file.
func (p *parser) addInput(name string) {
	p.inputs = append(p.inputs, len(p.inv.args))
	p.srcLangs = append(p.srcLangs, p.lang)
	p.inv.args = append(p.inv.args, arg{value: name, form: formInput, class: classInput, path: true})
}

// apply records a table option and interprets those that change the
// parser's state.
func (p *parser) apply(o *option, a arg) {
	// tok is the argument as written, for messages; only Local decisions
	// and a few options need it.
	var tok string
	if o.local != ReasonNone || o.class == classPre || o.name == "-Wa," || o.name == "-Xassembler" || o.name == "-x" {
		tok = a.opt + a.value
		if a.form == formSeparate {
			tok = a.opt + " " + a.value
		}
	}
	if o.local != ReasonNone {
		p.localIf(o.local, reasonText(o.local, tok))
		if o.local == ReasonQuery && !p.hasQuery {
			p.query, p.hasQuery = local(o.local, reasonText(o.local, tok)), true
		}
	}
	switch o.name {
	case "-c":
		p.c = true
	case "-S":
		p.s = true
	case "-E":
		p.e = true
	case "-M":
		p.m = true
	case "-MM":
		p.mm = true
	case "-MD", "-MMD":
		p.md = true
	case "-MF":
		p.mf = a.value
	case "-MT", "-MQ":
		p.inv.depTarget = true
	case "-o":
		p.outputs++
		p.inv.explicitOutput = a.value
	case "-x":
		switch l := Language(a.value); {
		case l == "none":
			p.lang = ""
		case knownLanguages[l]:
			p.lang = l
		default:
			p.lang = ""
			p.localIf(ReasonUnknownLanguage, "unknown language -x "+a.value)
		}
	case "-include":
		p.includes = append(p.includes, a.value)
	case "-I", "-iquote", "-isystem":
		if a.value != "-" {
			p.quoteDir = append(p.quoteDir, a.value)
		}
	case "-Wp,", "-Xpreprocessor":
		if p.preprocessorPassThrough(a.value, o.name == "-Wp,", tok) {
			a.class = classDep
		}
	case "-Wa,", "-Xassembler":
		opts := []string{a.value}
		if o.name == "-Wa," {
			opts = strings.Split(a.value, ",")
		}
		for _, x := range opts {
			if !assemblerOptionOK(x) {
				p.localIf(ReasonReadsFile, "assembler option "+x+" (from "+tok+") may read or write files")
				break
			}
		}
	}
	p.inv.args = append(p.inv.args, a)
}

// preprocessorPassThrough checks the options of -Wp,a,b,... (comma
// separated) or -Xpreprocessor a (one option). Defines, undefines and
// include directories are fine; -MD file and -MMD file (the Linux kernel's
// -Wp,-MMD,dir/.foo.o.d) name the dependency file; -MF, -MT, -MQ, -MP are
// dependency options. Anything else makes the invocation Local. It returns
// whether the options are about dependency output.
func (p *parser) preprocessorPassThrough(value string, comma bool, tok string) (dep bool) {
	opts := []string{value}
	if comma {
		opts = strings.Split(value, ",")
	}
	for i := 0; i < len(opts); i++ {
		o := opts[i]
		switch {
		case o == "-MD" || o == "-MMD":
			if i+1 >= len(opts) {
				p.localIf(ReasonMissingArgument, "missing file after "+o+" in "+tok)
				return dep
			}
			i++
			p.wpDep = opts[i]
			dep = true
		case o == "-MP" || o == "-MG":
			dep = true
		case o == "-MF" || o == "-MT" || o == "-MQ":
			if i+1 >= len(opts) {
				p.localIf(ReasonMissingArgument, "missing argument after "+o+" in "+tok)
				return dep
			}
			i++
			if o == "-MF" {
				p.wpDep = opts[i]
			}
			dep = true
		case len(o) > 2 && (strings.HasPrefix(o, "-D") || strings.HasPrefix(o, "-U") || strings.HasPrefix(o, "-I")):
		default:
			p.localIf(ReasonUnknownFlag, "unknown preprocessor option "+o+" in "+tok)
			return dep
		}
	}
	return dep
}

// finish computes the mode, source, outputs, flag lists and decision.
func (p *parser) finish(exists func(string) bool) {
	inv := p.inv
	switch {
	case p.e || p.m || p.mm:
		// -M and -MM imply -E even next to -MD (gcc then writes the
		// dependencies to -o's file and compiles nothing).
		inv.Mode = ModePreprocess
	case p.s:
		inv.Mode = ModeAssembly
	case p.c:
		inv.Mode = ModeCompile
	default:
		inv.Mode = ModeLink
	}
	inv.hasOutput = p.outputs > 0
	if inv.hasOutput {
		inv.depTargetDefault = inv.explicitOutput
	}
	if len(p.inputs) == 1 {
		inv.Source = inv.args[p.inputs[0]].value
		if p.srcLangs[0] != "" {
			inv.Language = p.srcLangs[0]
		} else {
			inv.Language, _ = languageOfFile(inv.Source, inv.Kind.IsCXX())
		}
	}
	inv.depDriver, inv.depMF = p.md, p.mf != ""
	p.deriveOutputs()
	for _, a := range inv.args {
		switch a.class {
		case classPre:
			inv.PreprocessorFlags = a.appendTo(inv.PreprocessorFlags)
		case classDep:
			inv.DependencyFlags = a.appendTo(inv.DependencyFlags)
		case classCommon:
			inv.CompileFlags = a.appendTo(inv.CompileFlags)
		}
	}
	inv.Decision = p.decide(exists)
}

// deriveOutputs derives Output, DepFile and DwoFile.
func (p *parser) deriveOutputs() {
	inv := p.inv
	if inv.Source == "" && !inv.hasOutput {
		return
	}
	stem := strings.TrimSuffix(path.Base(inv.Source), path.Ext(path.Base(inv.Source)))
	if inv.hasOutput {
		inv.Output = inv.explicitOutput
	} else {
		switch inv.Mode {
		case ModeCompile:
			inv.Output = stem + ".o"
		case ModeAssembly:
			inv.Output = stem + ".s"
		}
	}
	if inv.Language.IsPreprocessed() || inv.Mode == ModePreprocess || inv.Mode == ModeLink {
		// gcc runs no preprocessor on .i and .ii input and writes no .d.
	} else {
		switch {
		case p.wpDep != "":
			inv.DepFile = p.wpDep
		case p.mf != "":
			inv.DepFile = p.mf
		case p.md && inv.hasOutput:
			inv.DepFile = replaceExt(inv.Output, ".d", true)
		case p.md:
			inv.DepFile = stem + ".d"
		}
	}
	if p.split && inv.Mode == ModeCompile && inv.Output != "" {
		if inv.hasOutput {
			inv.DwoFile = replaceExt(inv.Output, ".dwo", false)
		} else {
			inv.DwoFile = stem + ".dwo"
		}
	}
}

// replaceExt replaces the extension of the last path component of name by
// ext, or appends ext if there is none. A dot at the start of the base name
// begins an extension only if leadingDot (gcc's spec %.SUFFIX treats it so;
// its dump-base logic does not).
func replaceExt(name, ext string, leadingDot bool) string {
	dir, base := name[:strings.LastIndexByte(name, '/')+1], name[strings.LastIndexByte(name, '/')+1:]
	if i := strings.LastIndexByte(base, '.'); i > 0 || (i == 0 && leadingDot) {
		base = base[:i]
	}
	return dir + base + ext
}

// decide returns the decision; the first applicable reason wins, in this
// order: compiler, query (any option asking the compiler something), mode
// (preprocess, link), conftests, options in argument order, then inputs
// and outputs, precompiled headers. The reasons up to conftests depend
// only on the command line's shape (which tokens are options, their
// arguments, inputs): the kiln command's C fast path (wrapper/fastpath)
// decides exactly those before the Go runtime starts, and must agree.
func (p *parser) decide(exists func(string) bool) Decision {
	inv := p.inv
	if inv.Kind == KindUnknown {
		return local(ReasonUnknownCompiler, "unknown compiler "+filepath.Base(inv.Compiler))
	}
	if p.hasQuery {
		return p.query
	}
	switch inv.Mode {
	case ModePreprocess:
		if p.e {
			return local(ReasonPreprocessOnly, "-E only preprocesses")
		}
		return local(ReasonPreprocessOnly, "-M/-MM only preprocesses")
	case ModeLink:
		return local(ReasonLink, "no -c or -S: the command links")
	}
	if why := conftest(inv.Source, inv.Output); why != "" {
		return local(ReasonConftest, why)
	}
	if p.hasFirst {
		return p.first
	}
	if p.outputs > 1 {
		return local(ReasonConflict, "-o given more than once")
	}
	if p.wpDep != "" && (p.md || p.mf != "") {
		return local(ReasonConflict, "dependency flags both on the driver and in -Wp")
	}
	if inv.hasOutput && inv.explicitOutput == "-" {
		return local(ReasonStdout, "output to standard output")
	}
	for _, i := range p.inputs {
		if inv.args[i].value == "-" {
			return local(ReasonStdin, "source from standard input")
		}
	}
	switch len(p.inputs) {
	case 0:
		return local(ReasonNoSource, "no source file")
	case 1:
	default:
		return local(ReasonSeveralSources, "several input files")
	}
	if p.srcLangs[0] == "" {
		if _, ok := languageOfFile(inv.Source, false); !ok {
			return local(ReasonNotSource, "input "+inv.Source+" is not a source file")
		}
	}
	if inv.Language.IsHeader() {
		return local(ReasonPrecompiledHeader, "compiling header "+inv.Source+" makes a precompiled header")
	}
	if !inv.Language.Remotable() {
		return local(ReasonLanguage, "language "+string(inv.Language)+" is compiled locally")
	}
	if inv.Output == "" {
		return local(ReasonNoSource, "no output file") // unreachable: a single source always has one
	}
	for _, h := range p.includes {
		if gch := p.findPCH(h, exists); gch != "" {
			return local(ReasonPrecompiledHeader, "-include "+h+" has a precompiled header "+gch)
		}
	}
	return Decision{Remote: true}
}

// findPCH returns the precompiled header gcc would use for -include h, or
// "". gcc looks for h.gch (a file, or a directory of them) first relative
// to the working directory, then along the "..." include chain: -iquote,
// -I and -isystem directories.
func (p *parser) findPCH(h string, exists func(string) bool) string {
	if exists(h + ".gch") {
		return h + ".gch"
	}
	if path.IsAbs(h) {
		return ""
	}
	for _, d := range p.quoteDir {
		if c := path.Join(d, h) + ".gch"; exists(c) {
			return c
		}
	}
	return ""
}
