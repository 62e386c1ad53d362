package test

import (
	"io/fs"
	"path/filepath"
	"strconv"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// filepathWalk calls f with the base name of every file below dir.
func filepathWalk(dir string, f func(name string)) {
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			f(d.Name())
		}
		return nil
	})
}
