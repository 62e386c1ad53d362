// Package toolchain captures a compiler toolchain as a REAPI input tree:
// the driver, the programs it runs for a compile (cc1, cc1plus, as,
// objcopy), their shared libraries and ELF loader, at the same absolute
// paths as on the host, with the host's symlinks as SymlinkNodes. A worker
// that makes such a tree the root of a hermetic sandbox runs the compiler
// there as on the client's machine, whatever the worker's distribution.
//
// Capture hashes every file (about 77 MiB for gcc 12 with cc1plus);
// LoadOrCapture caches the result on local disk, keyed by the compiler's
// path, size and modification time and checked with a stat per file, so
// that each kiln cc process after the first gets the tree without hashing.
//
// A tree for Debian 12's gcc on a merged-/usr system:
//
//	lib -> usr/lib
//	lib64 -> usr/lib64
//	usr/bin/gcc -> gcc-12 -> x86_64-linux-gnu-gcc-12   (the driver)
//	usr/bin/as -> x86_64-linux-gnu-as                   (found in PATH)
//	usr/bin/objcopy -> x86_64-linux-gnu-objcopy         (for -gsplit-dwarf)
//	usr/lib/gcc/x86_64-linux-gnu/12/{cc1,cc1plus}
//	usr/lib/x86_64-linux-gnu/{libc.so.6,libz.so.1,...}
//	usr/lib64/ld-linux-x86-64.so.2 -> ../../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
package toolchain
