package worker

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kiln-build/kiln/cas/casclient"
	"github.com/kiln-build/kiln/cas/digest"
)

// outputs collects an action's outputs into an ActionResult and the blobs
// to upload for it.
//
// Security: an output path is looked up with resolveInRoot, so symlinks
// among its parents are followed only while they stay inside the input
// root; a path that leaves it is treated as absent. The output itself is
// examined with Lstat and never followed: a symlink is reported as a
// symlink. Inside output directories, symlinks are recorded, not followed,
// so nothing outside the build directory is ever read.
type outputs struct {
	fn     digest.Function
	root   string // the input root, canonical
	wd     string // the working directory, relative to root ("" is root)
	format repb.Command_OutputDirectoryFormat
	result *repb.ActionResult
	blobs  []casclient.Blob
	// maxData is the largest file read into memory (the CAS client's
	// batch blob limit); inlineLeft is what the action may still read
	// into memory in all, from maxInlineOutputBytes.
	maxData, inlineLeft int64
	// problem is the first output that violates the spec (a directory
	// listed as an output file, an absolute symlink target): it becomes
	// the response's status.
	problem error
}

// outputKind says which legacy list a symlink of an output_paths output
// also goes to.
type outputKind int

const (
	kindAny outputKind = iota // output_paths: decided by what is found
	kindFile
	kindDirectory
)

// maxInlineOutputBytes bounds the output bytes one action holds in
// memory for upload; files beyond it are read again when sent.
const maxInlineOutputBytes = 16 << 20

// file queues the regular file at host for upload and returns its digest.
// It reads the file once: a small file is kept in memory (within the
// action's budget) and sent from there, so it is never read twice.
func (o *outputs) file(host string) (digest.Digest, error) {
	b, err := casclient.FileBlob(o.fn, host, min(o.maxData, o.inlineLeft))
	if err != nil {
		return digest.Digest{}, err
	}
	o.inlineLeft -= int64(len(b.Data))
	o.blobs = append(o.blobs, b)
	return b.Digest, nil
}

func (o *outputs) fail(err error) {
	if o.problem == nil {
		o.problem = err
	}
}

// collect examines every output the command asked for.
func (o *outputs) collect(cmd *repb.Command) error {
	if len(cmd.GetOutputPaths()) > 0 {
		// REAPI 2.1: output_files and output_directories are ignored, but
		// they tell old clients' lists apart for symlinks.
		legacy := map[string]outputKind{}
		for _, p := range cmd.GetOutputFiles() {
			legacy[p] = kindFile
		}
		for _, p := range cmd.GetOutputDirectories() {
			legacy[p] = kindDirectory
		}
		for _, p := range cmd.GetOutputPaths() {
			if err := o.one(p, kindAny, legacy[p]); err != nil {
				return err
			}
		}
		return nil
	}
	for _, p := range cmd.GetOutputFiles() {
		if err := o.one(p, kindFile, kindFile); err != nil {
			return err
		}
	}
	for _, p := range cmd.GetOutputDirectories() {
		if err := o.one(p, kindDirectory, kindDirectory); err != nil {
			return err
		}
	}
	return nil
}

// one collects the output at p (relative to the working directory).
// expect is the list it was requested in; legacy is the deprecated list
// that a symlink found there also goes to in output_paths mode.
func (o *outputs) one(p string, expect, legacy outputKind) error {
	rel := path.Join(o.wd, p) // p is validated: relative, no "." or ".."
	parent, err := resolveInRoot(o.root, parentOf(rel))
	if err != nil {
		return nil // its parents lead out of the build directory: absent
	}
	host := filepath.Join(parent, path.Base(rel))
	if rel == "" || rel == "." {
		host = o.root
	}
	fi, err := os.Lstat(host)
	if err != nil {
		return nil // missing outputs are simply absent
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(host)
		if err != nil {
			return status.Errorf(codes.Internal, "output %q: %v", p, err)
		}
		if filepath.IsAbs(target) {
			o.fail(status.Errorf(codes.FailedPrecondition, "output %q is a symlink to the absolute path %q, which this server does not allow (SymlinkAbsolutePathStrategy DISALLOWED)", p, target))
			return nil
		}
		link := &repb.OutputSymlink{Path: p, Target: target}
		if expect == kindAny {
			o.result.OutputSymlinks = append(o.result.OutputSymlinks, link)
			if legacy == kindAny {
				legacy = kindFile
				if t, err := resolveInRoot(o.root, rel); err == nil {
					if ti, err := os.Stat(t); err == nil && ti.IsDir() {
						legacy = kindDirectory
					}
				}
			}
		}
		// Deprecated in 2.1, still filled for clients that read only these.
		if legacy == kindDirectory {
			o.result.OutputDirectorySymlinks = append(o.result.OutputDirectorySymlinks, link)
		} else {
			o.result.OutputFileSymlinks = append(o.result.OutputFileSymlinks, link)
		}
	case fi.Mode().IsRegular():
		if expect == kindDirectory {
			o.fail(status.Errorf(codes.FailedPrecondition, "output directory %q is a regular file", p))
			return nil
		}
		d, err := o.file(host)
		if err != nil {
			return err
		}
		o.result.OutputFiles = append(o.result.OutputFiles, &repb.OutputFile{Path: p, Digest: d.Proto(), IsExecutable: fi.Mode()&0o111 != 0})
	case fi.IsDir():
		if expect == kindFile {
			o.fail(status.Errorf(codes.FailedPrecondition, "output file %q is a directory", p))
			return nil
		}
		od, err := o.tree(host)
		if err != nil {
			return err
		}
		od.Path = p
		o.result.OutputDirectories = append(o.result.OutputDirectories, od)
	}
	// Sockets, FIFOs and devices cannot be represented: absent.
	return nil
}

// tree builds the Tree of the directory at host and queues its blobs.
func (o *outputs) tree(host string) (*repb.OutputDirectory, error) {
	children := map[digest.Digest]*repb.Directory{}
	encoded := map[digest.Digest][]byte{}
	var walk func(dir string) (*repb.Directory, digest.Digest, error)
	walk = func(dir string) (*repb.Directory, digest.Digest, error) {
		ents, err := os.ReadDir(dir) // sorted by name, and never following symlinks
		if err != nil {
			return nil, digest.Digest{}, status.Errorf(codes.Internal, "output directory: %v", err)
		}
		out := &repb.Directory{}
		for _, ent := range ents {
			p := filepath.Join(dir, ent.Name())
			switch t := ent.Type(); {
			case t&fs.ModeSymlink != 0:
				target, err := os.Readlink(p)
				if err != nil {
					return nil, digest.Digest{}, status.Errorf(codes.Internal, "output directory: %v", err)
				}
				out.Symlinks = append(out.Symlinks, &repb.SymlinkNode{Name: ent.Name(), Target: target})
			case t.IsDir():
				sub, sd, err := walk(p)
				if err != nil {
					return nil, digest.Digest{}, err
				}
				children[sd] = sub
				out.Directories = append(out.Directories, &repb.DirectoryNode{Name: ent.Name(), Digest: sd.Proto()})
			case t.IsRegular():
				fi, err := ent.Info()
				if err != nil {
					return nil, digest.Digest{}, status.Errorf(codes.Internal, "output directory: %v", err)
				}
				d, err := o.file(p)
				if err != nil {
					return nil, digest.Digest{}, err
				}
				out.Files = append(out.Files, &repb.FileNode{Name: ent.Name(), Digest: d.Proto(), IsExecutable: fi.Mode()&0o111 != 0})
			}
		}
		data, err := proto.MarshalOptions{Deterministic: true}.Marshal(out)
		if err != nil {
			return nil, digest.Digest{}, status.Errorf(codes.Internal, "output directory: %v", err)
		}
		d := digest.FromBytes(o.fn, data)
		encoded[d] = data
		return out, d, nil
	}
	root, rootDigest, err := walk(host)
	if err != nil {
		return nil, err
	}
	tree := &repb.Tree{Root: root}
	keys := make([]digest.Digest, 0, len(children))
	for d := range children {
		keys = append(keys, d)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	for _, d := range keys {
		tree.Children = append(tree.Children, children[d])
	}
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(tree)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "output directory: %v", err)
	}
	td := digest.FromBytes(o.fn, data)
	o.blobs = append(o.blobs, casclient.Blob{Digest: td, Data: data})
	od := &repb.OutputDirectory{TreeDigest: td.Proto()}
	if o.format == repb.Command_DIRECTORY_ONLY || o.format == repb.Command_TREE_AND_DIRECTORY {
		// The root and every directory below it go to the CAS on their own.
		for d, data := range encoded {
			o.blobs = append(o.blobs, casclient.Blob{Digest: d, Data: data})
		}
		od.RootDirectoryDigest = rootDigest.Proto()
	}
	return od, nil
}
