package toolchain

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/cas/inputtree"
)

// maxSymlinks is the number of symlinks one path may pass through, as the
// kernel's ELOOP limit.
const maxSymlinks = 40

// hostFile is a regular file found on the host, to be hashed.
type hostFile struct {
	path string // in-root path
	host string // host path
	info fs.FileInfo
}

// resolver walks host paths component by component, as the kernel does,
// and records every directory, symlink and final file it meets, so that
// the same path resolves the same way inside the tree. It reads the host
// under hostRoot ("/" normally; tests use a directory as a fake root, in
// which absolute symlink targets are relative to that directory, as in a
// chroot).
type resolver struct {
	hostRoot string
	dirs     map[string]bool
	symlinks map[string]string
	files    map[string]hostFile
}

func newResolver(hostRoot string) *resolver {
	return &resolver{hostRoot: hostRoot, dirs: map[string]bool{}, symlinks: map[string]string{}, files: map[string]hostFile{}}
}

// host returns the host path of an absolute in-root path.
func (r *resolver) host(p string) string { return filepath.Join(r.hostRoot, p) }

// add records absolute path p and everything its resolution passes
// through, and returns the physical path it resolves to (no symlinks). The
// final component must be a regular file or a directory (of which only the
// directory itself is recorded).
func (r *resolver) add(p string) (string, error) {
	if !path.IsAbs(p) {
		return "", status.Errorf(codes.InvalidArgument, "path %q is not absolute", p)
	}
	links := 0
	cur := "/" // physical: no symlink in it
	rest := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur) // physical parent; "/" stays "/"
			continue
		}
		next := path.Join(cur, c)
		fi, err := os.Lstat(r.host(next))
		if err != nil {
			return "", fileError(err, "resolve %s: %s", p, next)
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			links++
			if links > maxSymlinks {
				return "", status.Errorf(codes.FailedPrecondition, "resolve %s: too many levels of symbolic links", p)
			}
			target, err := os.Readlink(r.host(next))
			if err != nil {
				return "", fileError(err, "resolve %s: readlink %s", p, next)
			}
			r.symlinks[next] = target
			if path.IsAbs(target) {
				cur = "/"
			}
			rest = append(strings.Split(target, "/"), rest...)
		case fi.IsDir():
			r.dirs[next] = true
			cur = next
		case fi.Mode().IsRegular():
			if len(rest) > 0 && !allEmpty(rest) {
				return "", status.Errorf(codes.FailedPrecondition, "resolve %s: %s is not a directory", p, next)
			}
			r.files[next] = hostFile{path: next, host: r.host(next), info: fi}
			return next, nil
		default:
			return "", status.Errorf(codes.FailedPrecondition, "resolve %s: %s is neither a file, a directory nor a symlink", p, next)
		}
	}
	return cur, nil
}

// allEmpty reports whether the remaining components are only "" and ".".
func allEmpty(l []string) bool {
	for _, c := range l {
		if c != "" && c != "." {
			return false
		}
	}
	return true
}

// treeTarget returns the target to store for the symlink at absolute
// in-root path link with host target target: the host target as it is
// when it is relative and stays inside the tree, else a relative path that
// resolves the same way in the tree. An absolute target from a directory d
// levels deep becomes d times "../" and the target without its '/' (exact,
// because the directory holding a recorded link is always physical). A
// relative target whose ".." climb above "/" (where the kernel stops)
// becomes the relative path from the link's directory to the physical path
// the link leads to, which resolve computes.
func treeTarget(link, target string, resolve func(string) (string, error)) (string, error) {
	dir := path.Dir(link)
	depth := 0
	if dir != "/" {
		depth = strings.Count(dir, "/")
	}
	if path.IsAbs(target) {
		t := strings.Repeat("../", depth) + strings.TrimLeft(target, "/")
		t = strings.TrimSuffix(t, "/")
		if t == "" {
			t = "."
		}
		if inputtree.ValidateSymlinkTarget(depth, t) == nil {
			return t, nil
		}
	} else if inputtree.ValidateSymlinkTarget(depth, target) == nil {
		return target, nil
	}
	resolved, err := resolve(link)
	if err != nil {
		return "", err
	}
	rel, err := filepath.Rel(dir, resolved)
	if err != nil {
		return "", status.Errorf(codes.Internal, "symlink %s: %v", link, err)
	}
	return rel, nil
}

// fileError classifies a host file error: a missing file is
// FailedPrecondition (the toolchain is not what it claims), anything else
// Internal.
func fileError(err error, format string, args ...any) error {
	code := codes.Internal
	if os.IsNotExist(err) {
		code = codes.FailedPrecondition
	}
	return status.Errorf(code, format+": %v", append(args, err)...)
}
