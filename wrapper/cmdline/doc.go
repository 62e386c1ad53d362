// Package cmdline parses gcc, g++ and clang command lines for the kiln cc
// wrapper and decides whether a compile can run on the cluster.
//
// One compile through the wrapper, as far as this package is concerned:
//
//	gcc -O2 -Iinc -MD -c src/x.c -o obj/x.o
//	        |
//	        | Parse: expand @files, classify every argument
//	        v
//	Invocation{Source: src/x.c, Language: c, Output: obj/x.o,
//	           DepFile: obj/x.d, Decision: remote}
//	        |                                   |
//	        | PreprocessArgs("x.i")             | RemoteCompileArgs("x.i", "obj/x.o")
//	        v                                   v
//	gcc -O2 -Iinc -MD src/x.c -E          gcc -O2 -c -x cpp-output x.i -o obj/x.o
//	    -MF obj/x.d -MQ obj/x.o -o x.i    (on a worker, in the toolchain's
//	(locally: writes x.i and obj/x.d)      input root)
//
// Local decisions are cheap (a few microseconds, see BenchmarkParseConftest)
// and conservative: an option the parser does not know, a missing option
// argument or a malformed line is Local, never Remote. Parse never panics
// (FuzzParse).
//
// Arguments fall into classes that say which step sees them: preprocessor
// options only the local -E run, dependency options likewise, and
// everything else (code generation, warnings, -std, -O) both, because
// those also define predefined macros. Preprocessor options that gcc
// records in DW_AT_producer (-undef, -nostdinc) are kept in both so that
// the objects stay byte-identical.
package cmdline
