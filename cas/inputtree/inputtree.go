// Package inputtree validates REAPI Directory messages, the nodes of an
// action's input root, so that neither the server nor a worker ever builds a
// path from a hostile name.
package inputtree

import (
	"path"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/internal/rpcstatus"
)

// ValidateName checks one entry name: non-empty, not "." or "..", without
// '/' or NUL.
func ValidateName(name string) error {
	switch {
	case name == "":
		return status.Error(codes.InvalidArgument, "empty name")
	case name == "." || name == "..":
		return status.Errorf(codes.InvalidArgument, "name %q is not allowed", name)
	case strings.ContainsAny(name, "/\x00"):
		return status.Errorf(codes.InvalidArgument, "name %q contains '/' or NUL", name)
	}
	return nil
}

// ValidateDirectory checks one Directory: every name valid, each list
// sorted by name as the spec requires, no name twice across files,
// directories and symlinks, digests well formed for fn, and symlink targets
// relative and not leaving the input root from depth (the number of path
// components between the input root and this directory).
func ValidateDirectory(fn digest.Function, dir *repb.Directory, depth int) error {
	seen := make(map[string]string, len(dir.GetFiles())+len(dir.GetDirectories())+len(dir.GetSymlinks()))
	check := func(kind, name, prev string) error {
		if err := ValidateName(name); err != nil {
			return rpcstatus.Wrap(err, kind)
		}
		if other, ok := seen[name]; ok {
			return status.Errorf(codes.InvalidArgument, "%s %q: name already used by a %s", kind, name, other)
		}
		if prev != "" && name < prev {
			return status.Errorf(codes.InvalidArgument, "%s %q: %ss are not sorted by name", kind, name, kind)
		}
		seen[name] = kind
		return nil
	}
	prev := ""
	for _, f := range dir.GetFiles() {
		if err := check("file", f.GetName(), prev); err != nil {
			return err
		}
		if _, err := digest.FromProto(fn, f.GetDigest()); err != nil {
			return rpcstatus.Wrapf(err, "file %q", f.GetName())
		}
		prev = f.GetName()
	}
	prev = ""
	for _, d := range dir.GetDirectories() {
		if err := check("directory", d.GetName(), prev); err != nil {
			return err
		}
		if _, err := digest.FromProto(fn, d.GetDigest()); err != nil {
			return rpcstatus.Wrapf(err, "directory %q", d.GetName())
		}
		prev = d.GetName()
	}
	prev = ""
	for _, s := range dir.GetSymlinks() {
		if err := check("symlink", s.GetName(), prev); err != nil {
			return err
		}
		if err := ValidateSymlinkTarget(depth, s.GetTarget()); err != nil {
			return rpcstatus.Wrapf(err, "symlink %q", s.GetName())
		}
		prev = s.GetName()
	}
	return nil
}

// ValidateSymlinkTarget checks that a symlink in a directory depth levels
// below the root points inside the root: relative, and never climbing above
// it with "..". The check is lexical; workers that read outputs never
// follow symlinks, and the hermetic sandbox makes the input root "/", so a
// chain of symlinks cannot reach the host through it.
func ValidateSymlinkTarget(depth int, target string) error {
	if target == "" {
		return status.Error(codes.InvalidArgument, "empty symlink target")
	}
	if path.IsAbs(target) {
		return status.Errorf(codes.InvalidArgument, "symlink target %q is absolute", target)
	}
	if strings.ContainsRune(target, 0) {
		return status.Errorf(codes.InvalidArgument, "symlink target %q contains NUL", target)
	}
	level := depth
	for _, seg := range strings.Split(target, "/") {
		switch seg {
		case "", ".":
		case "..":
			level--
			if level < 0 {
				return status.Errorf(codes.InvalidArgument, "symlink target %q escapes the input root", target)
			}
		default:
			level++
		}
	}
	return nil
}

// Walk fetches and validates the whole tree below root, breadth first,
// calling get for each directory not seen before (the same subtree may
// appear many times; it is read once). It returns every file digest of the
// tree (with repeats removed) and every directory digest including root.
// Errors from get keep their codes; a tree that is not valid is
// InvalidArgument naming the path.
func Walk(fn digest.Function, root digest.Digest, get func(digest.Digest) (*repb.Directory, error)) (files, dirs []digest.Digest, err error) {
	type item struct {
		d     digest.Digest
		path  string
		depth int
	}
	seenDirs := map[digest.Digest]bool{root: true}
	seenFiles := map[digest.Digest]bool{}
	queue := []item{{root, ".", 0}}
	for len(queue) > 0 {
		it := queue[0]
		queue = queue[1:]
		dirs = append(dirs, it.d)
		dir, err := get(it.d)
		if err != nil {
			return nil, nil, rpcstatus.Wrapf(err, "directory %s (%s)", it.path, it.d)
		}
		if err := ValidateDirectory(fn, dir, it.depth); err != nil {
			return nil, nil, rpcstatus.Wrapf(err, "directory %s", it.path)
		}
		for _, f := range dir.GetFiles() {
			fd, _ := digest.FromProto(fn, f.GetDigest()) // validated above
			if !seenFiles[fd] {
				seenFiles[fd] = true
				files = append(files, fd)
			}
		}
		for _, sub := range dir.GetDirectories() {
			sd, _ := digest.FromProto(fn, sub.GetDigest()) // validated above
			// A symlink's ".." may climb as many levels as its directory
			// is deep, so a directory valid at one depth is valid deeper.
			// Breadth first, the first visit is the shallowest: repeats
			// need no second check.
			if seenDirs[sd] {
				continue
			}
			seenDirs[sd] = true
			queue = append(queue, item{sd, path.Join(it.path, sub.GetName()), it.depth + 1})
		}
	}
	return files, dirs, nil
}
