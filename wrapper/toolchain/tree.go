package toolchain

import (
	"path"
	"sort"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kiln-build/kiln/cas/casclient"
	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/cas/inputtree"
)

// File is a regular file of a tree.
type File struct {
	// Path is the file's place in the input root: slash separated,
	// relative, the host's absolute path without its leading '/'
	// ("usr/lib/gcc/x86_64-linux-gnu/12/cc1").
	Path string
	// HostPath is where the content is on this machine; empty when the
	// content is Data.
	HostPath string
	// Data is the content of a file that exists only in memory (the
	// preprocessed source of a compile), when HostPath is empty.
	Data []byte
	// Digest is the content's digest.
	Digest digest.Digest
	// Executable is the REAPI is_executable bit: any execute bit on the
	// host.
	Executable bool
}

// Symlink is a symbolic link of a tree.
type Symlink struct {
	// Path is the link's place in the input root, like File.Path.
	Path string
	// Target is the link's target, always relative (REAPI forbids
	// absolute ones): an absolute host target /x seen from a directory d
	// levels deep becomes d times "../" followed by x.
	Target string
}

// Directory is one REAPI Directory of a tree.
type Directory struct {
	// Path is the directory's place in the input root, "" for the root.
	Path string
	// Digest is the digest of Data.
	Digest digest.Digest
	// Message is the Directory; do not modify it.
	Message *repb.Directory
	// Data is Message serialized deterministically, as uploaded.
	Data []byte
}

// Tree is a REAPI input tree that holds a compiler toolchain at the same
// absolute paths as on the host, so that it runs as the root of a hermetic
// sandbox (chroot). It is immutable.
type Tree struct {
	// Compiler is the absolute path of the compiler driver as given to
	// Capture (possibly a symlink in the tree, like /usr/bin/gcc ->
	// gcc-12): the program of the remote command.
	Compiler string
	// PathEnv is the PATH the remote command needs: the directories in
	// which programs that the driver runs by name (as, objcopy) were
	// found, in the order they were found.
	PathEnv string
	// LibraryPath lists directories of shared libraries the loader finds
	// on the host only through /etc/ld.so.cache or LD_LIBRARY_PATH (not
	// in its default directories): the remote command needs them in
	// LD_LIBRARY_PATH. Usually empty.
	LibraryPath []string
	// Root is the digest of the root Directory.
	Root digest.Digest
	// Directories are all directories of the tree, the root first, then
	// sorted by path. Identical subtrees appear once per path.
	Directories []Directory
	// Files are all regular files, sorted by path.
	Files []File
	// Symlinks are all symbolic links, sorted by path.
	Symlinks []Symlink
	// CopiedLinks are the host's symlinks to files that the tree holds as
	// copies of those files (see Capture), with their host targets: what
	// a cache of the tree checks to notice that one was retargeted. Not
	// part of the tree's content, and only set on captured trees.
	CopiedLinks []Symlink
	// TotalBytes is the size of all files.
	TotalBytes int64
	// FromCache tells whether LoadOrCapture read the tree from its cache
	// instead of hashing the files.
	FromCache bool
}

// WithFiles returns a new tree with the files of t plus extra (with the
// same Compiler and environment), typically the preprocessed source that
// makes a toolchain tree an action's input root. Only directory digests are
// computed; file digests come with the files. A path already in the tree,
// or one under a file or symlink, is InvalidArgument.
func (t *Tree) WithFiles(extra ...File) (*Tree, error) {
	b := newBuilder(t.fn())
	for _, f := range t.Files {
		if err := b.addFile(f); err != nil {
			return nil, err
		}
	}
	for _, s := range t.Symlinks {
		if err := b.addSymlink(s.Path, s.Target); err != nil {
			return nil, err
		}
	}
	for _, d := range t.Directories {
		if err := b.addDir(d.Path); err != nil {
			return nil, err
		}
	}
	for _, f := range extra {
		if err := b.addFile(f); err != nil {
			return nil, err
		}
	}
	out, err := b.build()
	if err != nil {
		return nil, err
	}
	out.Compiler, out.PathEnv, out.LibraryPath = t.Compiler, t.PathEnv, t.LibraryPath
	return out, nil
}

// Blobs returns every blob of the tree for upload, each digest once, in
// digest order: directories with their data, files by host path or with
// their data.
func (t *Tree) Blobs() []casclient.Blob {
	seen := make(map[digest.Digest]bool, len(t.Directories)+len(t.Files))
	var out []casclient.Blob
	for _, d := range t.Directories {
		if !seen[d.Digest] {
			seen[d.Digest] = true
			out = append(out, casclient.Blob{Digest: d.Digest, Data: d.Data})
		}
	}
	for _, f := range t.Files {
		if !seen[f.Digest] {
			seen[f.Digest] = true
			out = append(out, casclient.Blob{Digest: f.Digest, Path: f.HostPath, Data: f.Data})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest.String() < out[j].Digest.String() })
	return out
}

// fn returns the tree's digest function.
func (t *Tree) fn() digest.Function { return t.Root.Function() }

// node is a directory under construction.
type node struct {
	dirs     map[string]*node
	files    map[string]File
	symlinks map[string]string
}

func newNode() *node {
	return &node{dirs: map[string]*node{}, files: map[string]File{}, symlinks: map[string]string{}}
}

// builder assembles a tree from paths. Paths are relative, slash
// separated and clean; every entry's parent directories are created.
type builder struct {
	fn   digest.Function
	root *node
}

func newBuilder(fn digest.Function) *builder { return &builder{fn: fn, root: newNode()} }

// dir returns the node for directory p, creating it and its parents. It
// fails if a component is already a file or a symlink; errors name whole,
// the path being added.
func (b *builder) dir(p, whole string) (*node, error) {
	n := b.root
	if p == "" {
		return n, nil
	}
	for _, c := range strings.Split(p, "/") {
		if err := inputtree.ValidateName(c); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "path %q: %v", whole, status.Convert(err).Message())
		}
		if _, ok := n.files[c]; ok {
			return nil, status.Errorf(codes.InvalidArgument, "path %q: %s is a file", whole, c)
		}
		if _, ok := n.symlinks[c]; ok {
			return nil, status.Errorf(codes.InvalidArgument, "path %q: %s is a symlink", whole, c)
		}
		next := n.dirs[c]
		if next == nil {
			next = newNode()
			n.dirs[c] = next
		}
		n = next
	}
	return n, nil
}

// parent returns the node of p's directory and p's base name, checking
// that the name is free (or holds the same kind of entry).
func (b *builder) parent(p, kind string) (*node, string, error) {
	if p == "" || path.IsAbs(p) || path.Clean(p) != p {
		return nil, "", status.Errorf(codes.InvalidArgument, "%s path %q is not relative and clean", kind, p)
	}
	dir, name := path.Split(p)
	n, err := b.dir(strings.TrimSuffix(dir, "/"), p)
	if err != nil {
		return nil, "", err
	}
	if err := inputtree.ValidateName(name); err != nil {
		return nil, "", status.Errorf(codes.InvalidArgument, "%s %q: %v", kind, p, status.Convert(err).Message())
	}
	_, isFile := n.files[name]
	_, isLink := n.symlinks[name]
	_, isDir := n.dirs[name]
	if (isFile && kind != "file") || (isLink && kind != "symlink") || (isDir && kind != "directory") {
		return nil, "", status.Errorf(codes.InvalidArgument, "%s %q: the name is already used", kind, p)
	}
	return n, name, nil
}

// addFile adds a regular file; adding the same file twice is fine.
func (b *builder) addFile(f File) error {
	n, name, err := b.parent(f.Path, "file")
	if err != nil {
		return err
	}
	if old, ok := n.files[name]; ok && (old.Digest != f.Digest || old.Executable != f.Executable) {
		return status.Errorf(codes.InvalidArgument, "file %q added twice with different contents", f.Path)
	}
	n.files[name] = f
	return nil
}

// addSymlink adds a symbolic link; target must be relative and stay in
// the tree.
func (b *builder) addSymlink(p, target string) error {
	n, name, err := b.parent(p, "symlink")
	if err != nil {
		return err
	}
	if err := inputtree.ValidateSymlinkTarget(strings.Count(p, "/"), target); err != nil {
		return status.Errorf(codes.InvalidArgument, "symlink %q: %v", p, status.Convert(err).Message())
	}
	if old, ok := n.symlinks[name]; ok && old != target {
		return status.Errorf(codes.InvalidArgument, "symlink %q added twice with targets %q and %q", p, old, target)
	}
	n.symlinks[name] = target
	return nil
}

// addDir adds a (possibly empty) directory.
func (b *builder) addDir(p string) error {
	if p != "" {
		if _, _, err := b.parent(p, "directory"); err != nil {
			return err
		}
	}
	_, err := b.dir(p, p)
	return err
}

// build computes every Directory bottom-up and returns the tree.
func (b *builder) build() (*Tree, error) {
	t := &Tree{}
	var walk func(n *node, p string) (Directory, error)
	walk = func(n *node, p string) (Directory, error) {
		msg := &repb.Directory{}
		for _, name := range sortedKeys(n.files) {
			f := n.files[name]
			msg.Files = append(msg.Files, &repb.FileNode{Name: name, Digest: f.Digest.Proto(), IsExecutable: f.Executable})
			t.Files = append(t.Files, f)
			t.TotalBytes += f.Digest.Size()
		}
		for _, name := range sortedKeys(n.dirs) {
			sub, err := walk(n.dirs[name], path.Join(p, name))
			if err != nil {
				return Directory{}, err
			}
			msg.Directories = append(msg.Directories, &repb.DirectoryNode{Name: name, Digest: sub.Digest.Proto()})
		}
		for _, name := range sortedKeys(n.symlinks) {
			msg.Symlinks = append(msg.Symlinks, &repb.SymlinkNode{Name: name, Target: n.symlinks[name]})
			t.Symlinks = append(t.Symlinks, Symlink{Path: path.Join(p, name), Target: n.symlinks[name]})
		}
		data, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
		if err != nil {
			return Directory{}, status.Errorf(codes.Internal, "marshal directory %q: %v", p, err)
		}
		d := Directory{Path: p, Digest: digest.FromBytes(b.fn, data), Message: msg, Data: data}
		t.Directories = append(t.Directories, d)
		return d, nil
	}
	root, err := walk(b.root, "")
	if err != nil {
		return nil, err
	}
	t.Root = root.Digest
	// "" (the root) sorts first.
	sort.Slice(t.Directories, func(i, j int) bool { return t.Directories[i].Path < t.Directories[j].Path })
	sort.Slice(t.Files, func(i, j int) bool { return t.Files[i].Path < t.Files[j].Path })
	sort.Slice(t.Symlinks, func(i, j int) bool { return t.Symlinks[i].Path < t.Symlinks[j].Path })
	return t, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
