package fastpath

/*
#cgo CFLAGS: -O2 -Wall -Wextra -std=gnu11
#include <stdlib.h>
#include "fastpath.h"
*/
import "C"

import (
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
	out := (*C.char)(C.malloc(C.size_t(n)))
	defer C.free(unsafe.Pointer(out))
	if C.kiln_clean(in, out, C.size_t(n)) < 0 {
		return "", false
	}
	return C.GoString(out), true
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
	out := (*C.char)(C.malloc(4096))
	defer C.free(unsafe.Pointer(out))
	if C.kiln_resolve(n, pe, self, dir, out, 4096) < 0 {
		return "", false
	}
	return C.GoString(out), true
}

// CacheDir is the C kiln_cache_dir; set says which variables are set.
func CacheDir(xdg string, xdgSet bool, home string, homeSet bool) (string, bool) {
	x, h := optional(xdg, xdgSet), optional(home, homeSet)
	defer C.free(unsafe.Pointer(x))
	defer C.free(unsafe.Pointer(h))
	out := (*C.char)(C.malloc(4096))
	defer C.free(unsafe.Pointer(out))
	if C.kiln_cache_dir(x, h, out, 4096) < 0 {
		return "", false
	}
	return C.GoString(out), true
}

// JournalLine is the C kiln_journal_line.
func JournalLine(reason string, nanos int64) string {
	r := C.CString(reason)
	defer C.free(unsafe.Pointer(r))
	out := (*C.char)(C.malloc(128))
	defer C.free(unsafe.Pointer(out))
	if C.kiln_journal_line(r, C.longlong(nanos), out, 128) < 0 {
		return ""
	}
	return C.GoString(out)
}
