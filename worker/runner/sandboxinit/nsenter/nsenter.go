// Package nsenter lets a sandbox init enter its namespaces itself, as
// runc's package of the same name does: a C constructor, run before the Go
// runtime starts (while the process still has one thread, which
// unshare(CLONE_NEWUSER) requires), unshares the namespaces that
// KILN_NSENTER names, waits on descriptor 5 for the worker to write its
// uid and gid maps, and forks the init proper, PID 1 of the new PID
// namespace; the first process stays as its parent and exits with its
// status.
//
// Why: a worker that clones with CLONE_NEWUSER cannot use vfork, so Go
// forks the whole worker, copying its page tables and then faulting on
// every page either side writes; with a large heap (a server with the
// memory store and in-process workers) that cost more than the rest of
// the sandbox's start. With this package the worker starts the init with
// a plain vfork and exec.
//
// A binary that can be an init (see runner.SandboxConfig.Init) imports it
// for its side effect. An init without it never answers on descriptor 5,
// and the sandbox falls back to cloning (see runner.NewSandbox);
// sandboxinit refuses to run an init outside its namespaces.
package nsenter

/*
#cgo CFLAGS: -O2 -Wall -std=gnu11
*/
import "C"

// SyncFD is the descriptor of the socket on which the init tells the
// worker it unshared ('u') and the worker answers that the maps are
// written ('m').
const SyncFD = 5

// Env is the variable that asks for it, holding the clone flags in hex.
const Env = "KILN_NSENTER"
