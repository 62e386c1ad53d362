package cmdline

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
)

// PreprocessArgs returns the arguments (without the program name) of the
// local run that preprocesses the source into preprocessedPath (a .i or
// .ii file, see Language.PreprocessedExt) and writes the dependency file
// exactly as the original command would have:
//
//   - every argument is kept in order except -c, -S and -o;
//   - -E and "-o preprocessedPath" are appended ("-" is stdout);
//   - with -MD or -MMD but no -MF, "-MF DepFile" is appended: under -E,
//     gcc would name the .d after preprocessedPath instead;
//   - with -MD or -MMD, an explicit -o and no -MT or -MQ, "-MQ output" is
//     appended: that is the target gcc's driver adds when it compiles,
//     and under -E it would not.
//
// -Wp,-MD,file passes through unchanged: the driver adds no target for it
// in either mode. The caller must not call it for preprocessed input
// (Language.IsPreprocessed), which is sent as it is.
func (inv *Invocation) PreprocessArgs(preprocessedPath string) []string {
	out := make([]string, 0, len(inv.Args)+7)
	for _, a := range inv.args {
		if a.class == classMode || a.class == classOutput {
			continue
		}
		out = a.appendTo(out)
	}
	out = append(out, "-E")
	if inv.depDriver && !inv.depMF && inv.DepFile != "" {
		out = append(out, "-MF", inv.DepFile)
	}
	if inv.depDriver && !inv.depTarget && inv.depTargetDefault != "" {
		out = append(out, "-MQ", inv.depTargetDefault)
	}
	return append(out, "-o", preprocessedPath)
}

// RemoteCompileArgs returns the arguments (without the program name) that
// compile the preprocessed file preprocessedName into objectName on a
// worker: the CompileFlags in their original order, then -c (or -S), then
// "-x cpp-output" (or c++-cpp-output), the preprocessed file and
// "-o objectName". Preprocessor and dependency options are dropped: their
// work is done, and they name host paths.
//
// What the result is worth, checked against gcc 12 by TestAgainstGCC: the
// name and directory of the preprocessed file do not matter (gcc takes the
// source name for .file and DW_AT_name from the first line marker, and
// under -g the compilation directory from the "# 1 "/cwd//"" marker that
// -E writes). Without -g, or with -g -gno-column-info, the object is
// byte-identical to the local compile's, DW_AT_producer included. With
// column information (gcc's default under -g) the DWARF line table and
// DW_AT_decl_column differ wherever a macro expansion changed the length
// of a line before code, and with -g3 the .debug_macro layout differs;
// code and data are identical. With -gsplit-dwarf, objectName must be
// spelled like Output (relative to the same directory): gcc records the
// .dwo's path, derived from -o, in the object.
//
// For a rebased invocation (Rebase), the -fdebug-prefix-map that Rebase
// added is left out: it names the checkout and would make every checkout's
// action different. The client rewrites the one place the base directory
// normally remains, the working-directory marker, with
// ReplaceWorkingDirectory; if the preprocessed file still contains the base
// directory after that (a header included by an absolute path Rebase could
// not see), the action is checkout-specific anyway and the client should
// put DebugPrefixMap() in front of these arguments so that debug
// information matches a local compile.
func (inv *Invocation) RemoteCompileArgs(preprocessedName, objectName string) []string {
	out := make([]string, 0, len(inv.CompileFlags)+6)
	for i, a := range inv.args {
		if i == 0 && inv.baseDir != "" {
			continue // Rebase's -fdebug-prefix-map, see Rebase
		}
		if a.class == classCommon {
			out = a.appendTo(out)
		}
	}
	mode := inv.Mode.String()
	if mode == "" || mode == "-E" {
		mode = "-c" // not a remote invocation; return something well formed
	}
	return append(out, mode, "-x", string(inv.Language.Preprocessed()), preprocessedName, "-o", objectName)
}

// RemoteOutputs returns the files the remote compile writes, relative to
// its working directory as Output is: Output, and DwoFile when there is
// one (gcc may not write it; treat it as optional).
func (inv *Invocation) RemoteOutputs() []string {
	out := []string{inv.Output}
	if inv.DwoFile != "" {
		out = append(out, inv.DwoFile)
	}
	return out
}

// Rebase returns a copy of inv in which every absolute path under baseDir
// is made relative to cwd (both absolute and clean), so that the same
// compile in two checkouts at different places produces the same remote
// action, as ccache's base_dir does. It rewrites the source, -o, -I,
// -iquote, -isystem, -idirafter, -include, -imacros, -isysroot, --sysroot
// and -L arguments, and puts -fdebug-prefix-map=baseDir=. first (so that
// the user's own maps, applied last-first by gcc, win), which makes the
// compilation directory in debug information relative too. Args of the
// result is the command for a local compile that matches the remote one.
//
// Dependency options are left alone: the local preprocess still writes the
// .d file the build expects, with the target the original -o names. The
// dependency file lists the rewritten include paths relative to cwd.
//
// Under -g, the preprocessed output still holds the absolute working
// directory (gcc does not apply -fdebug-prefix-map to its "# 1 "/cwd//""
// marker), so preprocessed files from two checkouts differ in that line;
// ReplaceWorkingDirectory rewrites it.
//
// The decision is kept; it does not depend on where paths point. An empty
// baseDir returns inv itself.
func (inv *Invocation) Rebase(baseDir, cwd string) *Invocation {
	if baseDir == "" {
		return inv
	}
	baseDir = filepath.Clean(baseDir)
	toks := make([]string, 0, len(inv.Args)+1)
	toks = append(toks, "-fdebug-prefix-map="+baseDir+"=.")
	for _, a := range inv.args {
		if a.path && underDir(a.value, baseDir) {
			if rel, err := filepath.Rel(cwd, a.value); err == nil {
				a.value = rel
			}
		}
		toks = a.appendTo(toks)
	}
	notExist := func(string) ([]byte, error) { return nil, fs.ErrNotExist }
	out, err := ParseWithOptions(inv.Compiler, toks, Options{ReadFile: notExist, Exists: func(string) bool { return false }})
	if err != nil {
		// Unreachable: without response files, parsing cannot fail.
		panic(errors.New("cmdline: reparse failed: " + err.Error()))
	}
	out.Decision = inv.Decision
	out.depTargetDefault = inv.depTargetDefault
	out.baseDir = baseDir
	return out
}

// DebugPrefixMap returns the "-fdebug-prefix-map=BASE=." option that Rebase
// added, or "" if inv is not rebased. See RemoteCompileArgs for when the
// remote compile needs it.
func (inv *Invocation) DebugPrefixMap() string {
	if inv.baseDir == "" {
		return ""
	}
	return "-fdebug-prefix-map=" + inv.baseDir + "=."
}

// underDir reports whether p is dir or inside it (lexically).
func underDir(p, dir string) bool {
	if !filepath.IsAbs(p) {
		return false
	}
	p = filepath.Clean(p)
	return p == dir || strings.HasPrefix(p, dir+"/") || dir == "/"
}

// ReplaceWorkingDirectory rewrites the working-directory line marker that
// gcc -E writes as the second line of its output under -g ("# 1
// "/home/a/src/build//""), replacing the directory by what
// -fdebug-prefix-map=baseDir=. makes of it ("./build"), so that the
// preprocessed files of two checkouts are identical. The object compiled
// from the result is byte-identical to one compiled from the original with
// Rebase's options: gcc applies the same map to the directory when it
// writes DW_AT_comp_dir. data is returned unchanged if the marker is absent
// or not under baseDir.
func ReplaceWorkingDirectory(data []byte, baseDir string) []byte {
	baseDir = filepath.Clean(baseDir)
	// The marker is the second line: the first is "# 0 "source"".
	nl := strings.IndexByte(string(data[:min(len(data), 4096)]), '\n')
	if nl < 0 {
		return data
	}
	rest := data[nl+1:]
	end := strings.IndexByte(string(rest[:min(len(rest), 8192)]), '\n')
	if end < 0 {
		return data
	}
	line := string(rest[:end])
	const prefix, suffix = `# 1 "`, `//"`
	if !strings.HasPrefix(line, prefix) || !strings.HasSuffix(line, suffix) {
		return data
	}
	dir := line[len(prefix) : len(line)-len(suffix)]
	if dir != baseDir && !strings.HasPrefix(dir, baseDir) {
		return data
	}
	// gcc's remap is a plain string prefix replacement.
	newLine := prefix + "." + dir[len(baseDir):] + suffix
	out := make([]byte, 0, len(data)-len(line)+len(newLine))
	out = append(out, data[:nl+1]...)
	out = append(out, newLine...)
	return append(out, rest[end:]...)
}

// WantsDirectivesOnly reports whether the remote compile should get
// source that is preprocessed with gcc's -fdirectives-only rather than
// fully: gcc (not clang), C or C++, with DWARF column information (-g at
// level 1 or 2 without -gno-column-info). Full preprocessing changes the
// columns of every line where a macro was expanded; with -fdirectives-only
// macros are expanded by the remote compile itself, so the object matches
// a local compile byte for byte (RemoteSourceArgs). Without -g both ways
// give identical objects and the full way is kept; -g3 keeps it too (its
// macro section differs either way).
func (inv *Invocation) WantsDirectivesOnly() bool {
	switch inv.Kind {
	case KindGCC, KindGXX, KindCC, KindCXX:
	default:
		return false
	}
	if inv.Language != LangC && inv.Language != LangCXX {
		return false
	}
	level, columns := 0, true
	for _, f := range inv.CompileFlags {
		switch {
		case f == "-g0" || f == "-ggdb0":
			level = 0
		case f == "-g1" || f == "-ggdb1":
			level = 1
		case f == "-g" || f == "-ggdb" || f == "-g2" || f == "-ggdb2":
			level = 2
		case f == "-g3" || f == "-ggdb3":
			level = 3
		case strings.HasPrefix(f, "-gdwarf"):
			if level == 0 {
				level = 2 // -gdwarf-N turns -g on at the default level
			}
		case f == "-gno-column-info":
			columns = false
		case f == "-gcolumn-info":
			columns = true
		}
	}
	return (level == 1 || level == 2) && columns
}

// RemoteSourceArgs returns the arguments (without the program name) that
// compile sourceName, the output of PreprocessArgs with -fdirectives-only
// minus gcc's built-in definitions, into objectName on a worker whose
// working directory is remoteDir, as the local compile in cwd would: the
// CompileFlags in their original order, -nostdinc (every include is done;
// it also keeps the implicit stdc-predef.h out, which the file has),
// -fdebug-prefix-map=remoteDir=cwd (the compilation directory in the debug
// information), -c or -S, -x and the language, the source and -o. gcc
// records none of the added options in DW_AT_producer. sourceName must be
// the source as written on the command line (gcc names the compilation
// unit after it), placed at that path on the worker.
func (inv *Invocation) RemoteSourceArgs(sourceName, objectName, remoteDir, cwd string) []string {
	out := make([]string, 0, len(inv.CompileFlags)+9)
	for i, a := range inv.args {
		if i == 0 && inv.baseDir != "" {
			continue
		}
		if a.class == classCommon {
			out = a.appendTo(out)
		}
	}
	mode := inv.Mode.String()
	if mode == "" || mode == "-E" {
		mode = "-c"
	}
	return append(out, "-nostdinc", "-fdebug-prefix-map="+remoteDir+"="+cwd, mode, "-x", string(inv.Language), sourceName, "-o", objectName)
}
