// Package runnertest builds input roots from the host's files for tests
// of sandboxes: a userland for hermetic mode, a gcc toolchain tree as a
// client would capture it, and their REAPI form (ReadInputRoot).
package runnertest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/kiln-build/kiln/cas/digest"
)

// AddToTree puts host paths into root at the same absolute paths, the way
// a client would put a toolchain into an input root: symlinks on the way
// are recreated as relative symlinks and followed, directories are copied whole,
// and an ELF file brings the shared libraries ldd finds for it and the
// ELF loader. Files are hardlinked when root is on the same filesystem,
// else copied.
func AddToTree(root string, paths ...string) error {
	done := map[string]bool{}
	for _, p := range paths {
		if err := addPath(root, p, done); err != nil {
			return fmt.Errorf("add %s to the tree: %w", p, err)
		}
	}
	return nil
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
			if !filepath.IsAbs(target) {
				target = filepath.Join(cur, target)
			}
			if _, err := os.Lstat(dst); os.IsNotExist(err) {
				if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
					return err
				}
				// Relative, as REAPI input roots want them: the tree
				// mirrors absolute paths, so it points to the same place.
				rel, err := filepath.Rel(cur, target)
				if err != nil {
					return err
				}
				if err := os.Symlink(rel, dst); err != nil {
					return err
				}
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
			if err := LinkOrCopy(next, dst, fi.Mode()); err != nil {
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

// LinkOrCopy hardlinks src to dst, or copies it with mode when it cannot.
// An existing dst is left alone.
func LinkOrCopy(src, dst string, mode os.FileMode) error {
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

// ErrNoToolchain is returned by GCCTree on a machine without gcc or as.
var ErrNoToolchain = errors.New("no gcc or as on this machine")

// GCCTree lays out in root a toolchain made of the host's gcc, the way a
// client would capture it: the driver at /usr/bin/gcc, cc1, gcc's own
// headers, and with withAs the assembler (at /tools/as, where a command
// with PATH=/tools finds it; the driver looks for it in PATH), their
// shared libraries and the ELF loader. Nothing else of the host.
func GCCTree(root string, withAs bool) error {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		return ErrNoToolchain
	}
	out, err := exec.Command(gcc, "-print-prog-name=cc1").Output()
	if err != nil {
		return err
	}
	cc1 := strings.TrimSpace(string(out))
	out, err = exec.Command(gcc, "-print-file-name=include").Output()
	if err != nil {
		return err
	}
	include := strings.TrimSpace(string(out))
	if err := AddToTree(root, "/usr/bin/gcc", cc1, include); err != nil {
		return err
	}
	if !withAs {
		return nil
	}
	as, err := exec.LookPath("as")
	if err != nil {
		return ErrNoToolchain
	}
	real, err := filepath.EvalSymlinks(as)
	if err != nil {
		return err
	}
	if err := AddToTree(root, real); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(root, "tools"), 0o755); err != nil {
		return err
	}
	return os.Symlink(filepath.Join("..", real), filepath.Join(root, "tools", "as"))
}

// CompilerTree lays out in root the toolchain kiln cc sends with a
// compile of preprocessed source: the host's gcc driver at /usr/bin/gcc,
// cc1 and the assembler at /usr/bin/as (a command with PATH=/usr/bin
// finds it), with their shared libraries and the ELF loader, and none of
// gcc's headers. Plus extra host paths, added the same way.
func CompilerTree(root string, extra ...string) error {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		return ErrNoToolchain
	}
	if _, err := exec.LookPath("as"); err != nil {
		return ErrNoToolchain
	}
	out, err := exec.Command(gcc, "-print-prog-name=cc1").Output()
	if err != nil {
		return err
	}
	return AddToTree(root, append([]string{"/usr/bin/gcc", strings.TrimSpace(string(out)), "/usr/bin/as"}, extra...)...)
}

// CompileSource is a C file for GCCTree's toolchain: it uses a header from
// gcc's own include directory and nothing of libc.
const CompileSource = `#include <stddef.h>
int answer(void) { return (int)sizeof(size_t) * 6 - 6; }
`

// InputRoot is a directory on disk as a REAPI input tree.
type InputRoot struct {
	// Root is the digest of the root Directory.
	Root digest.Digest
	// Blobs are the serialized Directories and the files' contents.
	Blobs map[digest.Digest][]byte
}

// ReadInputRoot reads the tree below dir (files, executables, symlinks,
// directories) as an input root hashed with fn.
func ReadInputRoot(fn digest.Function, dir string) (*InputRoot, error) {
	r := &InputRoot{Blobs: map[digest.Digest][]byte{}}
	var err error
	r.Root, err = r.add(fn, dir)
	return r, err
}

func (r *InputRoot) add(fn digest.Function, dir string) (digest.Digest, error) {
	entries, err := os.ReadDir(dir) // sorted by name, as REAPI wants
	if err != nil {
		return digest.Digest{}, err
	}
	d := &repb.Directory{}
	for _, ent := range entries {
		p := filepath.Join(dir, ent.Name())
		switch {
		case ent.Type()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return digest.Digest{}, err
			}
			d.Symlinks = append(d.Symlinks, &repb.SymlinkNode{Name: ent.Name(), Target: target})
		case ent.IsDir():
			sub, err := r.add(fn, p)
			if err != nil {
				return digest.Digest{}, err
			}
			d.Directories = append(d.Directories, &repb.DirectoryNode{Name: ent.Name(), Digest: sub.Proto()})
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return digest.Digest{}, err
			}
			fi, err := ent.Info()
			if err != nil {
				return digest.Digest{}, err
			}
			fd := digest.FromBytes(fn, data)
			r.Blobs[fd] = data
			d.Files = append(d.Files, &repb.FileNode{Name: ent.Name(), Digest: fd.Proto(), IsExecutable: fi.Mode()&0o111 != 0})
		}
	}
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(d)
	if err != nil {
		return digest.Digest{}, err
	}
	dd := digest.FromBytes(fn, data)
	r.Blobs[dd] = data
	return dd, nil
}
