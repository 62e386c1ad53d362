// Package fastpath is the kiln command's fast path, in C: a constructor
// that runs before the Go runtime starts and handles the compiler calls
// whose decision needs nothing but the command line's shape: queries
// (--version, -print-*), -E/-M, links and configure-time probes. These
// are what a configure script sends, hundreds of times in a row, and
// starting the Go runtime costs more on a slow VM (about 3 ms here) than
// the whole 2 ms budget of such a call. The constructor decides, resolves
// the compiler in PATH, appends one line to the stats journal (folded into
// the counters by wrapper/stats) and execs the compiler. For anything else
// (a remote candidate, a response file, a compiler it cannot find, a
// journal it cannot write) it returns and the Go program does the whole
// job as before. KILN_FASTPATH=0 turns it off.
//
// The C code mirrors Go functions (cmdline's parser.decide up to the
// conftest rule, path.Clean, decide.ResolveCompiler, config.CacheDir); its
// option table, optab.h, is generated from cmdline.Shape (go generate).
// The functions below call the C ones, for the tests that check both
// agree; cmd/kiln imports the package for the constructor alone.
package fastpath

//go:generate go run ./gen optab.h
