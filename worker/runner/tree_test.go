package runner_test

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// addToTree puts host paths into root at the same absolute paths, the way
// a client would put a toolchain into an input root: symlinks on the way
// are recreated as symlinks and followed, directories are copied whole,
// and an ELF file brings the shared libraries ldd finds for it and the
// ELF loader. Files are hardlinked when root is on the same filesystem,
// else copied.
func addToTree(t testing.TB, root string, paths ...string) {
	t.Helper()
	done := map[string]bool{}
	for _, p := range paths {
		if err := addPath(root, p, done); err != nil {
			t.Fatalf("add %s to the tree: %v", p, err)
		}
	}
}

func addPath(root, p string, done map[string]bool) error {
	if done[p] {
		return nil
	}
	done[p] = true
	parts := strings.Split(strings.Trim(filepath.Clean(p), "/"), "/")
	cur := "/"
	for i, c := range parts {
		next := filepath.Join(cur, c)
		fi, err := os.Lstat(next)
		if err != nil {
			return err
		}
		dst := filepath.Join(root, next)
		rest := filepath.Join(parts[i+1:]...)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(next)
			if err != nil {
				return err
			}
			if _, err := os.Lstat(dst); os.IsNotExist(err) {
				if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
					return err
				}
				if err := os.Symlink(target, dst); err != nil {
					return err
				}
			}
			if !filepath.IsAbs(target) {
				target = filepath.Join(cur, target)
			}
			return addPath(root, filepath.Join(target, rest), done)
		case fi.IsDir() && rest != "":
			cur = next
			continue
		case fi.IsDir():
			return filepath.Walk(next, func(q string, qi os.FileInfo, err error) error {
				if err != nil || q == next {
					return err
				}
				if qi.IsDir() {
					return os.MkdirAll(filepath.Join(root, q), 0o755)
				}
				return addPath(root, q, done)
			})
		default:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			if err := linkOrCopy(next, dst, fi.Mode()); err != nil {
				return err
			}
			if isELF(next) {
				libs, err := sharedLibraries(next)
				if err != nil {
					return err
				}
				for _, l := range libs {
					if err := addPath(root, l, done); err != nil {
						return err
					}
				}
			}
			return nil
		}
	}
	return nil
}

func linkOrCopy(src, dst string, mode os.FileMode) error {
	if _, err := os.Lstat(dst); err == nil {
		return nil
	}
	if os.Link(src, dst) == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode.Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func isELF(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	magic := make([]byte, 4)
	_, err = io.ReadFull(f, magic)
	return err == nil && bytes.Equal(magic, []byte("\x7fELF"))
}

// sharedLibraries lists the absolute paths in ldd's output for p: the
// libraries and the loader. A static binary has none.
func sharedLibraries(p string) ([]string, error) {
	out, err := exec.Command("ldd", p).Output()
	if err != nil {
		return nil, nil // "not a dynamic executable"
	}
	var libs []string
	for _, line := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(line) {
			if strings.HasPrefix(f, "/") {
				libs = append(libs, f)
			}
		}
	}
	return libs, nil
}
