//go:build cgo

package sandboxinit

// The init is C (init.c), run by a constructor before the Go runtime
// starts, as runc's nsenter is, in the process that the worker starts with
// vfork and exec under the argv[0] Arg0, with descriptors 0-2 the action's
// stdin, stdout and stderr, 3 the spec, 4 the report and 5 a socket to the
// worker:
//
//  1. It unshares the namespaces named in hex by Env (one thread still,
//     as unshare(CLONE_NEWUSER) requires), tells the worker on fd 5 ('u')
//     and waits for it to write the uid and gid maps ('m').
//  2. It forks PID 1 of the new PID namespace, and stays as its parent: on
//     SIGTERM, which is how the worker stops an action, it kills PID 1 and
//     exits once the namespace is empty.
//  3. PID 1 reads the Spec, builds the filesystem view, applies the limits
//     and no_new_privs, finds the program (as LookPath does), runs it as
//     the sandbox user and reaps every process until it ends, then writes
//     the Report and exits; the kernel kills what is left in the namespace.
//
// Why C: the Go runtime's start (its heap, its threads, CPUID, which traps
// on this VM) cost PID 1 about 20 ms of CPU per action, a sixth of what
// kiln added to a cold remote compile; a worker that cloned with
// CLONE_NEWUSER forked its whole heap instead of vforking.
//
// A binary that can be an init (the kiln command, a test binary) links
// this package; one built without cgo has no init and says so (MaybeRun).

/*
#cgo CFLAGS: -O2 -Wall -Wextra -std=gnu11
#include <stdlib.h>
#include "init.h"
*/
import "C"

import "unsafe"

// cParseSpec parses data with the init's own parser, for the tests: false
// if the init would refuse it.
func cParseSpec(data []byte) (*Spec, bool) {
	var p *C.uchar
	if len(data) > 0 {
		p = (*C.uchar)(unsafe.Pointer(&data[0]))
	}
	var s C.struct_kiln_spec
	if C.kiln_parse_spec(p, C.size_t(len(data)), &s) != 0 {
		return nil, false
	}
	defer C.kiln_free_spec(&s)
	return &Spec{
		Probe:    s.flags&C.KILN_SPEC_PROBE != 0,
		Hermetic: s.flags&C.KILN_SPEC_HERMETIC != 0,
		Network:  s.flags&C.KILN_SPEC_NETWORK != 0,
		SetIDs:   s.flags&C.KILN_SPEC_SETIDS != 0,
		UID:      int(s.uid),
		GID:      int(s.gid),
		Limits: Limits{
			Processes: int64(s.limits[0]), OpenFiles: int64(s.limits[1]),
			FileSizeBytes: int64(s.limits[2]), MemoryBytes: int64(s.limits[3]),
		},
		Dir:      C.GoString(s.dir),
		BuildDir: C.GoString(s.build_dir),
		Args:     goStrings(s.args),
		Env:      goStrings(s.env),
		Covers:   goStrings(s.covers),
	}, true
}

// goStrings copies a NULL-terminated C array of strings.
func goStrings(l **C.char) []string {
	var out []string
	for i := uintptr(0); ; i++ {
		p := *(**C.char)(unsafe.Add(unsafe.Pointer(l), i*unsafe.Sizeof(l)))
		if p == nil {
			return out
		}
		out = append(out, C.GoString(p))
	}
}

// cEncodeReport encodes r as the init does, with sig its signal number.
func cEncodeReport(r Report, sig int) []byte {
	msg := C.CString(r.Message)
	defer C.free(unsafe.Pointer(msg))
	cr := C.struct_kiln_report{
		code: C.uint32_t(r.Code), message: msg, exit_code: C.int32_t(r.ExitCode), signal: C.uint32_t(sig),
		user_ns: C.int64_t(r.UserTime), system_ns: C.int64_t(r.SystemTime), max_rss_bytes: C.int64_t(r.MaxRSSBytes),
	}
	buf := make([]byte, len(r.Message)+64)
	n := C.kiln_encode_report(&cr, (*C.uchar)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
	return buf[:n]
}

// cConstants are init.h's, for the test that they agree with Go's.
func cConstants() map[string]any {
	return map[string]any{
		"Arg0": C.KILN_INIT_ARG0, "Env": C.KILN_INIT_ENV, "DefaultPath": C.KILN_DEFAULT_PATH,
		"specMagic": uint32(C.KILN_SPEC_MAGIC), "reportMagic": uint32(C.KILN_REPORT_MAGIC), "specMax": int(C.KILN_SPEC_MAX),
		"CodeInvalidArgument": uint32(C.KILN_CODE_INVALID_ARGUMENT), "CodeInternal": uint32(C.KILN_CODE_INTERNAL),
	}
}

// cQuote is the init's quoting of s, which error messages use as Go's %q.
func cQuote(s string) string {
	cs := C.CString(s)
	defer C.free(unsafe.Pointer(cs))
	buf := make([]byte, 12*len(s)+16)
	return C.GoString(C.kiln_quote(cs, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf))))
}
