// Package sibling finds kiln's other binary: kiln and kiln-core are
// installed side by side, and each looks for the other next to its own
// executable (symbolic links resolved). No dependencies beyond the
// standard library: the small kiln command links it.
package sibling

import (
	"os"
	"path/filepath"
)

// Path returns the file called name in the directory of the running
// executable, with links resolved, if it exists and is not a directory.
func Path(name string) (string, bool) {
	self, err := os.Executable()
	if err != nil {
		return "", false
	}
	if real, err := filepath.EvalSymlinks(self); err == nil {
		self = real
	}
	p := filepath.Join(filepath.Dir(self), name)
	if fi, err := os.Stat(p); err != nil || fi.IsDir() {
		return "", false
	}
	return p, true
}
