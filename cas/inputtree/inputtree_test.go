package inputtree_test

import (
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/cas/inputtree"
)

var fileDigest = digest.FromBytes(digest.SHA256, []byte("x")).Proto()

func TestValidateDirectory(t *testing.T) {
	f := func(names ...string) []*repb.FileNode {
		var out []*repb.FileNode
		for _, n := range names {
			out = append(out, &repb.FileNode{Name: n, Digest: fileDigest})
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		dir   *repb.Directory
		depth int
		want  string // "" means valid
	}{
		{"Valid", &repb.Directory{Files: f("a", "b"), Directories: []*repb.DirectoryNode{{Name: "c", Digest: fileDigest}}, Symlinks: []*repb.SymlinkNode{{Name: "d", Target: "a"}}}, 0, ""},
		{"Slash", &repb.Directory{Files: f("a/b")}, 0, "contains '/'"},
		{"Dot", &repb.Directory{Files: f(".")}, 0, `"." is not allowed`},
		{"DotDot", &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "..", Digest: fileDigest}}}, 0, `".." is not allowed`},
		{"Empty", &repb.Directory{Files: f("")}, 0, "empty name"},
		{"Duplicate", &repb.Directory{Files: f("a", "a")}, 0, "already used"},
		{"DuplicateAcrossKinds", &repb.Directory{Files: f("a"), Symlinks: []*repb.SymlinkNode{{Name: "a", Target: "b"}}}, 0, "already used by a file"},
		{"Unsorted", &repb.Directory{Files: f("b", "a")}, 0, "not sorted"},
		{"BadDigest", &repb.Directory{Files: []*repb.FileNode{{Name: "a", Digest: &repb.Digest{Hash: "nothex"}}}}, 0, "file \"a\""},
		{"AbsoluteSymlink", &repb.Directory{Symlinks: []*repb.SymlinkNode{{Name: "l", Target: "/etc/passwd"}}}, 0, "absolute"},
		{"EscapingSymlink", &repb.Directory{Symlinks: []*repb.SymlinkNode{{Name: "l", Target: "a/../../x"}}}, 0, "escapes"},
		{"ClimbingWithinDepth", &repb.Directory{Symlinks: []*repb.SymlinkNode{{Name: "l", Target: "../../x"}}}, 2, ""},
		{"ClimbingBeyondDepth", &repb.Directory{Symlinks: []*repb.SymlinkNode{{Name: "l", Target: "../../../x"}}}, 2, "escapes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := inputtree.ValidateDirectory(digest.SHA256, tc.dir, tc.depth)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want InvalidArgument mentioning %q", err, tc.want)
			}
		})
	}
}

func TestWalk(t *testing.T) {
	store := map[digest.Digest]*repb.Directory{}
	put := func(d *repb.Directory) *repb.Digest {
		b, _ := proto.Marshal(d)
		dg := digest.FromBytes(digest.SHA256, b)
		store[dg] = d
		return dg.Proto()
	}
	leaf := put(&repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: fileDigest}}})
	escaping := put(&repb.Directory{Symlinks: []*repb.SymlinkNode{{Name: "up", Target: "../../etc"}}})
	good := put(&repb.Directory{Files: []*repb.FileNode{{Name: "g", Digest: fileDigest}}, Directories: []*repb.DirectoryNode{{Name: "a", Digest: leaf}, {Name: "b", Digest: leaf}}})
	bad := put(&repb.Directory{Directories: []*repb.DirectoryNode{{Name: "sub", Digest: escaping}}})
	get := func(d digest.Digest) (*repb.Directory, error) {
		if dir, ok := store[d]; ok {
			return dir, nil
		}
		return nil, status.Error(codes.NotFound, "no such directory")
	}
	files, dirs, err := inputtree.Walk(digest.SHA256, digest.MustNew(digest.SHA256, good.Hash, good.SizeBytes), get)
	if err != nil || len(files) != 1 || len(dirs) != 2 {
		t.Fatalf("walk: %d files, %d dirs, %v", len(files), len(dirs), err)
	}
	_, _, err = inputtree.Walk(digest.SHA256, digest.MustNew(digest.SHA256, bad.Hash, bad.SizeBytes), get)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "directory sub") {
		t.Fatalf("escaping symlink: %v", err)
	}
	_, _, err = inputtree.Walk(digest.SHA256, digest.FromBytes(digest.SHA256, []byte("nope")), get)
	if status.Code(err) != codes.NotFound {
		t.Fatalf("missing root: %v", err)
	}
}

// FuzzValidateSymlinkTarget checks the lexical rule against a simulation:
// a target is accepted exactly when it is relative and its ".." never climb
// above the root.
func FuzzValidateSymlinkTarget(f *testing.F) {
	for _, s := range []string{"a", "../a", "a/../..", "/x", "", "./.", "a//b/../../.."} {
		f.Add(1, s)
	}
	f.Fuzz(func(t *testing.T, depth int, target string) {
		if depth < 0 || depth > 64 {
			return
		}
		err := inputtree.ValidateSymlinkTarget(depth, target)
		ok := target != "" && !strings.HasPrefix(target, "/") && !strings.Contains(target, "\x00")
		level := depth
		for _, seg := range strings.Split(target, "/") {
			if seg == ".." {
				level--
				if level < 0 {
					ok = false
				}
			} else if seg != "" && seg != "." {
				level++
			}
		}
		if ok != (err == nil) {
			t.Fatalf("ValidateSymlinkTarget(%d, %q) = %v, want ok=%v", depth, target, err, ok)
		}
	})
}
