package worker

import (
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxSymlinkHops bounds symlink resolution, like the kernel's ELOOP limit.
const maxSymlinkHops = 40

// errEscapes is returned when a path leaves the build directory through a
// symlink or "..".
var errEscapes = errors.New("leaves the build directory")

// resolveInRoot returns the host path of rel, a slash-separated path
// relative to root, with every symlink along it resolved the way the kernel
// would, except that nothing may leave root: a relative target that climbs
// above root, or an absolute target outside it, is errEscapes. Absolute
// targets inside root (an action may create them with $PWD) are followed.
// Components that do not exist are taken literally, so the result may name
// a path that does not exist yet. root must be a canonical absolute path
// (no symlinks in it).
//
// The result holds no symlinks up to its last existing component. It is
// only as stable as the tree: callers use it when no process of the action
// is left to race with them.
func resolveInRoot(root, rel string) (string, error) {
	resolved := ""                  // relative to root, clean, "" is root itself
	todo := strings.Split(rel, "/") // components still to walk
	hops := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if resolved == "" {
				return "", errEscapes
			}
			resolved = parentOf(resolved)
			continue
		}
		next := path.Join(resolved, c)
		host := filepath.Join(root, next)
		fi, err := os.Lstat(host)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			// Missing, or not a symlink: take the component as it is.
			resolved = next
			continue
		}
		if hops++; hops > maxSymlinkHops {
			return "", errors.New("too many levels of symbolic links")
		}
		target, err := os.Readlink(host)
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(target) {
			in, ok := strings.CutPrefix(filepath.Clean(target), root)
			if !ok || in != "" && !strings.HasPrefix(in, "/") {
				return "", errEscapes
			}
			resolved = ""
			target = strings.TrimPrefix(in, "/")
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return filepath.Join(root, resolved), nil
}

// parentOf returns the parent of a clean relative path, "" for a single
// component.
func parentOf(p string) string {
	if d := path.Dir(p); d != "." {
		return d
	}
	return ""
}

// mkdirInRoot creates the directory rel below root and its missing parents,
// resolving existing symlinks with resolveInRoot so that it never creates
// anything outside root. A component that exists and is not a directory is
// InvalidArgument.
func mkdirInRoot(root, rel string) (string, error) {
	if rel == "" {
		return root, nil // root itself, which exists
	}
	p, err := resolveInRoot(root, rel)
	if err != nil {
		return "", status.Errorf(codes.InvalidArgument, "directory %q: %v", rel, err)
	}
	if err := os.MkdirAll(p, 0o755); err != nil {
		if errors.Is(err, syscall.ENOTDIR) {
			return "", status.Errorf(codes.InvalidArgument, "directory %q: a parent is not a directory", rel)
		}
		return "", status.Errorf(codes.Internal, "directory %q: %v", rel, err)
	}
	return p, nil
}

// removeTree removes the directory p and everything below it. Actions may
// leave directories without write or search permission, which plain
// os.RemoveAll cannot empty: those get their permissions back first. Only
// directories are chmodded, never files: input files are hardlinks into
// the file cache and share its inodes.
func removeTree(p string) error {
	if err := os.RemoveAll(p); err == nil {
		return nil
	}
	// WalkDir calls fn for a directory before reading it, so fixing the
	// mode in fn lets it read the directory next. It never follows symlinks.
	_ = filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(q, 0o700)
		}
		return nil
	})
	return os.RemoveAll(p)
}
