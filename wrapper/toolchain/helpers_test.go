package toolchain_test

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/cas/inputtree"
	"github.com/kiln-build/kiln/wrapper/toolchain"
)

// validate checks the tree with the validation workers and the server
// apply to input roots, and that every directory's digest matches its
// data.
func validate(t *testing.T, tr *toolchain.Tree) {
	t.Helper()
	byDigest := map[digest.Digest]*repb.Directory{}
	for _, d := range tr.Directories {
		if got := digest.FromBytes(digest.SHA256, d.Data); got != d.Digest {
			t.Fatalf("directory %q: digest %s, data hashes to %s", d.Path, d.Digest, got)
		}
		byDigest[d.Digest] = d.Message
	}
	if tr.Directories[0].Path != "" || tr.Directories[0].Digest != tr.Root {
		t.Fatalf("first directory is %q, not the root", tr.Directories[0].Path)
	}
	files, _, err := inputtree.Walk(digest.SHA256, tr.Root, func(d digest.Digest) (*repb.Directory, error) {
		return byDigest[d], nil
	})
	if err != nil {
		t.Fatalf("invalid tree: %v", err)
	}
	hosts := map[digest.Digest]bool{}
	for _, f := range tr.Files {
		hosts[f.Digest] = true
	}
	if len(files) != len(hosts) {
		t.Fatalf("tree has %d distinct files, Files %d", len(files), len(hosts))
	}
}

// materialize lays the tree out under dir by walking its Directory
// messages from the root, as a worker does, copying file contents from the
// host paths listed in Files.
func materialize(t *testing.T, tr *toolchain.Tree, dir string) {
	t.Helper()
	msgs := map[digest.Digest]*repb.Directory{}
	for _, d := range tr.Directories {
		msgs[d.Digest] = d.Message
	}
	hosts := map[digest.Digest]string{}
	for _, f := range tr.Files {
		hosts[f.Digest] = f.HostPath
	}
	var walk func(d digest.Digest, at string)
	walk = func(d digest.Digest, at string) {
		msg := msgs[d]
		if err := os.MkdirAll(at, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range msg.GetFiles() {
			fd := digest.MustNew(digest.SHA256, f.GetDigest().GetHash(), f.GetDigest().GetSizeBytes())
			mode := os.FileMode(0o644)
			if f.GetIsExecutable() {
				mode = 0o755
			}
			copyFile(t, hosts[fd], filepath.Join(at, f.GetName()), mode)
		}
		for _, s := range msg.GetSymlinks() {
			if err := os.Symlink(s.GetTarget(), filepath.Join(at, s.GetName())); err != nil {
				t.Fatal(err)
			}
		}
		for _, sub := range msg.GetDirectories() {
			walk(digest.MustNew(digest.SHA256, sub.GetDigest().GetHash(), sub.GetDigest().GetSizeBytes()), filepath.Join(at, sub.GetName()))
		}
	}
	walk(tr.Root, dir)
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
