//go:build !race

package fastpath

// Linked statically, the kiln command starts without the dynamic loader
// and libc's relocations: about 1 ms less per call here. The race
// detector's runtime cannot be linked statically, hence the build tag.

// #cgo LDFLAGS: -static
import "C"
