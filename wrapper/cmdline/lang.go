package cmdline

import "strings"

// Language is a source language as gcc's -x option spells it ("c", "c++",
// "cpp-output", ...). The zero value means "not known".
type Language string

// The languages the parser knows. Only C and C++, plain or already
// preprocessed, are compiled remotely; the others are recognized so that
// the Local decision can name them.
const (
	LangC                Language = "c"
	LangCXX              Language = "c++"
	LangCPreprocessed    Language = "cpp-output"
	LangCXXPreprocessed  Language = "c++-cpp-output"
	LangCHeader          Language = "c-header"
	LangCXXHeader        Language = "c++-header"
	LangAssembler        Language = "assembler"
	LangAssemblerCpp     Language = "assembler-with-cpp"
	LangObjC             Language = "objective-c"
	LangObjCXX           Language = "objective-c++"
	LangObjCPreprocessed Language = "objective-c-cpp-output"
	LangObjCXXPreproc    Language = "objective-c++-cpp-output"
	LangObjCHeader       Language = "objective-c-header"
	LangObjCXXHeader     Language = "objective-c++-header"
	LangFortran          Language = "f95"
	LangGo               Language = "go"
	LangD                Language = "d"
	LangAda              Language = "ada"
	LangCUDA             Language = "cuda"
	LangOpenCL           Language = "cl"
)

// knownLanguages lists every -x value the parser accepts; -x with any other
// value makes the invocation Local (gcc would reject it).
var knownLanguages = map[Language]bool{
	LangC: true, LangCXX: true, LangCPreprocessed: true, LangCXXPreprocessed: true,
	LangCHeader: true, LangCXXHeader: true, LangAssembler: true, LangAssemblerCpp: true,
	LangObjC: true, LangObjCXX: true, LangObjCPreprocessed: true, LangObjCXXPreproc: true,
	LangObjCHeader: true, LangObjCXXHeader: true, LangFortran: true, "f77": true,
	"f77-cpp-input": true, "f95-cpp-input": true, LangGo: true, LangD: true, LangAda: true,
	LangCUDA: true, LangOpenCL: true, "c-header-cpp-output": true, "c++-system-header": true,
	"c++-user-header": true, "c++-header-unit": true, "objc-cpp-output": true, "objc++-cpp-output": true,
}

// Remotable reports whether kiln compiles sources of this language
// remotely: C and C++, plain or preprocessed. Assembler is not: an .s file
// may read other files through .include and .incbin, which no preprocessor
// reports, and assembling is cheap anyway.
func (l Language) Remotable() bool {
	switch l {
	case LangC, LangCXX, LangCPreprocessed, LangCXXPreprocessed:
		return true
	}
	return false
}

// IsPreprocessed reports whether the language is already preprocessed
// output, which the wrapper sends as it is, without a local -E run.
func (l Language) IsPreprocessed() bool {
	return l == LangCPreprocessed || l == LangCXXPreprocessed
}

// IsHeader reports whether compiling a file of this language produces a
// precompiled header.
func (l Language) IsHeader() bool {
	return strings.HasSuffix(string(l), "-header") || l == "c++-system-header" || l == "c++-user-header" || l == "c++-header-unit"
}

// Preprocessed returns the language of the output of preprocessing a file
// of language l: cpp-output for C, c++-cpp-output for C++. Preprocessed
// languages map to themselves; others to "".
func (l Language) Preprocessed() Language {
	switch l {
	case LangC, LangCPreprocessed:
		return LangCPreprocessed
	case LangCXX, LangCXXPreprocessed:
		return LangCXXPreprocessed
	}
	return ""
}

// PreprocessedExt returns the file name extension gcc uses for the
// preprocessed form of l: ".i" for C, ".ii" for C++, "" otherwise.
func (l Language) PreprocessedExt() string {
	switch l.Preprocessed() {
	case LangCPreprocessed:
		return ".i"
	case LangCXXPreprocessed:
		return ".ii"
	}
	return ""
}

// languageOfFile returns the language gcc infers from a file name, as in
// gcc's default_compilers table, and whether the name is a source file at
// all (object files, archives and unknown extensions are linker inputs).
// cxxDriver is true for g++, c++ and clang++, which compile .c, .i and .h
// files as C++ (g++spec.cc: -xc++ around them).
func languageOfFile(name string, cxxDriver bool) (Language, bool) {
	ext := ""
	if i := strings.LastIndexByte(name, '.'); i >= 0 && !strings.ContainsRune(name[i:], '/') {
		ext = name[i+1:]
	}
	var l Language
	switch ext {
	case "c":
		l = LangC
	case "i":
		l = LangCPreprocessed
	case "ii":
		l = LangCXXPreprocessed
	case "cc", "cp", "cxx", "cpp", "CPP", "c++", "C":
		l = LangCXX
	case "h":
		l = LangCHeader
	case "hh", "H", "hp", "hxx", "hpp", "HPP", "h++", "tcc":
		l = LangCXXHeader
	case "s":
		l = LangAssembler
	case "S", "sx":
		l = LangAssemblerCpp
	case "m":
		l = LangObjC
	case "mi":
		l = LangObjCPreprocessed
	case "mm", "M":
		l = LangObjCXX
	case "mii":
		l = LangObjCXXPreproc
	case "f", "for", "ftn", "F", "FOR", "FTN", "fpp", "FPP", "f90", "f95", "f03", "f08", "F90", "F95", "F03", "F08":
		l = LangFortran
	case "go":
		l = LangGo
	case "d", "di", "dd":
		l = LangD
	case "adb", "ads":
		l = LangAda
	case "cu":
		l = LangCUDA
	case "cl":
		l = LangOpenCL
	default:
		return "", false
	}
	if cxxDriver {
		switch l {
		case LangC:
			l = LangCXX
		case LangCPreprocessed:
			l = LangCXXPreprocessed
		case LangCHeader:
			l = LangCXXHeader
		}
	}
	return l, true
}
