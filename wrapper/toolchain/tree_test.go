package toolchain_test

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/wrapper/toolchain"
)

func TestWithFiles(t *testing.T) {
	f := newFakeRoot(t)
	tr, err := f.capturer().Capture(context.Background(), "/usr/bin/gcc")
	if err != nil {
		t.Fatal(err)
	}
	src := digest.FromBytes(digest.SHA256, []byte("int x;\n"))
	t.Run("InputRoot", func(t *testing.T) {
		// The toolchain plus the preprocessed source is an action's input root.
		in, err := tr.WithFiles(toolchain.File{Path: "work/src/x.i", HostPath: "/tmp/x.i", Digest: src})
		if err != nil {
			t.Fatal(err)
		}
		validate(t, in)
		if in.Root == tr.Root || len(in.Files) != len(tr.Files)+1 || in.TotalBytes != tr.TotalBytes+src.Size() {
			t.Fatalf("root %s (toolchain %s), %d files", in.Root, tr.Root, len(in.Files))
		}
		if in.Compiler != tr.Compiler || in.PathEnv != tr.PathEnv {
			t.Fatalf("Compiler %q PathEnv %q", in.Compiler, in.PathEnv)
		}
		// Unchanged subtrees keep their digests: usr/ did not change.
		if dir(t, in, "usr") != dir(t, tr, "usr") {
			t.Fatal("usr/ changed")
		}
		again, _ := tr.WithFiles(toolchain.File{Path: "work/src/x.i", HostPath: "/elsewhere/x.i", Digest: src})
		if again.Root != in.Root {
			t.Fatal("the host path changed the digest")
		}
	})
	for _, tc := range []struct {
		name string
		path string
		msg  string
	}{
		// Paths under a symlink would not be where the tree says.
		{"UnderSymlink", "lib/x.i", `path "lib/x.i": lib is a symlink`},
		{"OverDirectory", "usr", `file "usr": the name is already used`},
		{"Absolute", "/x.i", `file path "/x.i" is not relative and clean`},
		{"NotClean", "work/../x.i", `file path "work/../x.i" is not relative and clean`},
		{"SameNameOtherContent", "usr/bin/x86_64-linux-gnu-as", `file "usr/bin/x86_64-linux-gnu-as" added twice with different contents`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tr.WithFiles(toolchain.File{Path: tc.path, Digest: src})
			requireStatus(t, err, codes.InvalidArgument, tc.msg)
		})
	}
}

func TestBlobs(t *testing.T) {
	f := newFakeRoot(t)
	tr, err := f.capturer().Capture(context.Background(), "/usr/bin/gcc")
	if err != nil {
		t.Fatal(err)
	}
	blobs := tr.Blobs()
	seen := map[digest.Digest]bool{}
	for i, b := range blobs {
		if seen[b.Digest] {
			t.Fatalf("blob %s twice", b.Digest)
		}
		seen[b.Digest] = true
		if i > 0 && blobs[i-1].Digest.String() >= b.Digest.String() {
			t.Fatal("blobs not sorted")
		}
		if (b.Path == "") == (b.Data == nil) {
			t.Fatalf("blob %s has both or neither data and path", b.Digest)
		}
	}
	// The ELF copies (gcc, cc1, as) are one blob.
	distinct := map[digest.Digest]bool{}
	for _, fl := range tr.Files {
		distinct[fl.Digest] = true
	}
	for _, d := range tr.Directories {
		distinct[d.Digest] = true
	}
	if len(blobs) != len(distinct) || len(distinct) >= len(tr.Files)+len(tr.Directories) {
		t.Fatalf("%d blobs for %d distinct digests", len(blobs), len(distinct))
	}
}

// dir returns the digest of the directory at p.
func dir(t *testing.T, tr *toolchain.Tree, p string) digest.Digest {
	t.Helper()
	for _, d := range tr.Directories {
		if d.Path == p {
			return d.Digest
		}
	}
	t.Fatalf("no directory %q", p)
	return digest.Digest{}
}
