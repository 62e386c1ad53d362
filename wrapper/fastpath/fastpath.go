package fastpath

/*
#cgo CFLAGS: -O2 -Wall -Wextra -std=gnu11
#include <stdlib.h>
#include "fastpath.h"
*/
import "C"

import (
	"time"
	"unsafe"
)

// cstrings converts ss to C strings; free releases them.
func cstrings(ss []string) (arr **C.char, free func()) {
	n := len(ss)
	if n == 0 {
		n = 1
	}
	p := (*[1 << 20]*C.char)(C.malloc(C.size_t(n) * C.size_t(unsafe.Sizeof((*C.char)(nil)))))[:n:n]
	for i, s := range ss {
		p[i] = C.CString(s)
	}
	return &p[0], func() {
		for i := range ss {
			C.free(unsafe.Pointer(p[i]))
		}
		C.free(unsafe.Pointer(&p[0]))
	}
}

// outString gives fill an output buffer of n bytes and returns what it
// wrote there; ok false when fill reports failure (a negative result).
func outString(n int, fill func(out *C.char, n C.size_t) C.int) (string, bool) {
	out := (*C.char)(C.malloc(C.size_t(n)))
	defer C.free(unsafe.Pointer(out))
	if fill(out, C.size_t(n)) < 0 {
		return "", false
	}
	return C.GoString(out), true
}

// optional returns s as a C string, NULL when !ok.
func optional(s string, ok bool) *C.char {
	if !ok {
		return nil
	}
	return C.CString(s)
}

// Decide is the C kiln_decide: the local reason the fast path gives
// compiler with args, or ok false when it leaves the call to Go.
func Decide(compiler string, args []string) (reason string, ok bool) {
	cc := C.CString(compiler)
	defer C.free(unsafe.Pointer(cc))
	arr, free := cstrings(args)
	defer free()
	r := C.kiln_decide(cc, C.int(len(args)), arr)
	if r == nil {
		return "", false
	}
	return C.GoString(r), true
}

// KindKnown is the C kiln_kind_known.
func KindKnown(path string) bool {
	p := C.CString(path)
	defer C.free(unsafe.Pointer(p))
	return C.kiln_kind_known(p) != 0
}

// Clean is the C kiln_clean (path.Clean); ok false if it did not fit in n
// bytes.
func Clean(p string, n int) (string, bool) {
	in := C.CString(p)
	defer C.free(unsafe.Pointer(in))
	return outString(n, func(out *C.char, n C.size_t) C.int { return C.kiln_clean(in, out, n) })
}

// Conftest is the C kiln_conftest.
func Conftest(source, output string) bool {
	s, o := C.CString(source), C.CString(output)
	defer C.free(unsafe.Pointer(s))
	defer C.free(unsafe.Pointer(o))
	return C.kiln_conftest(s, o) != 0
}

// Resolve is the C kiln_resolve.
func Resolve(name, pathEnv, selfReal, cwd string) (string, bool) {
	n, pe := C.CString(name), C.CString(pathEnv)
	self, dir := optional(selfReal, selfReal != ""), optional(cwd, cwd != "")
	defer func() {
		for _, p := range []*C.char{n, pe, self, dir} {
			C.free(unsafe.Pointer(p))
		}
	}()
	return outString(4096, func(out *C.char, size C.size_t) C.int { return C.kiln_resolve(n, pe, self, dir, out, size) })
}

// CacheDir is the C kiln_cache_dir; set says which variables are set.
func CacheDir(xdg string, xdgSet bool, home string, homeSet bool) (string, bool) {
	x, h := optional(xdg, xdgSet), optional(home, homeSet)
	defer C.free(unsafe.Pointer(x))
	defer C.free(unsafe.Pointer(h))
	return outString(4096, func(out *C.char, n C.size_t) C.int { return C.kiln_cache_dir(x, h, out, n) })
}

// JournalLine is the C kiln_journal_line.
func JournalLine(reason string, nanos int64) string {
	r := C.CString(reason)
	defer C.free(unsafe.Pointer(r))
	line, _ := outString(128, func(out *C.char, n C.size_t) C.int { return C.kiln_journal_line(r, C.longlong(nanos), out, n) })
	return line
}

// MaxMessage and AcceptTimeout are the C side's copies of wrapper/ccd's.
const (
	MaxMessage    = C.KILN_MAX_MESSAGE
	AcceptTimeout = C.KILN_ACCEPT_TIMEOUT_MS * time.Millisecond
)

// SocketPath is the C kiln_socket_path.
func SocketPath(cache, core string, size, mtimeNanos int64) (string, bool) {
	c, k := C.CString(cache), C.CString(core)
	defer C.free(unsafe.Pointer(c))
	defer C.free(unsafe.Pointer(k))
	return outString(4096, func(out *C.char, n C.size_t) C.int {
		return C.kiln_socket_path(c, k, C.longlong(size), C.longlong(mtimeNanos), out, n)
	})
}

// EncodeRequest is the C kiln_encode_request: a whole frame.
func EncodeRequest(dir, compiler string, umask uint32, args, env []string) ([]byte, bool) {
	d, c := C.CString(dir), C.CString(compiler)
	defer C.free(unsafe.Pointer(d))
	defer C.free(unsafe.Pointer(c))
	a, freeA := cstrings(args)
	defer freeA()
	e, freeE := cstrings(env)
	defer freeE()
	var out *C.char
	n := C.kiln_encode_request(d, c, C.uint(umask), C.int(len(args)), a, C.int(len(env)), e, &out)
	if n < 0 {
		return nil, false
	}
	defer C.free(unsafe.Pointer(out))
	return C.GoBytes(unsafe.Pointer(out), C.int(n)), true
}

// Answer is what the C kiln_decode_answer read.
type Answer struct {
	// Kind is 1 for an accept, 2 for a response.
	Kind                int
	Wait                time.Duration
	Exit                int
	Local               bool
	Stdout, Stderr, Err string
}

// DecodeAnswer is the C kiln_decode_answer; ok false when it refuses the
// payload.
func DecodeAnswer(payload []byte) (Answer, bool) {
	p := C.CBytes(append(payload, 0))
	defer C.free(p)
	var wait C.uint
	var r C.struct_kiln_response
	kind := C.kiln_decode_answer((*C.uchar)(p), C.size_t(len(payload)), &wait, &r)
	if kind < 0 {
		return Answer{}, false
	}
	a := Answer{Kind: int(kind)}
	if kind == 1 {
		a.Wait = time.Duration(wait) * time.Millisecond
		return a, true
	}
	a.Exit, a.Local = int(r.exit), r.local != 0
	a.Stdout = C.GoStringN(r.out, C.int(r.out_len))
	a.Stderr = C.GoStringN(r.err, C.int(r.err_len))
	a.Err = C.GoStringN(r.error, C.int(r.error_len))
	return a, true
}
