package sibling_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kiln-build/kiln/internal/sibling"
)

func TestPath(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	self, _ = filepath.EvalSymlinks(self)
	if p, ok := sibling.Path(filepath.Base(self)); !ok || p != self {
		t.Fatalf("Path(own name) = %q, %v; want %q", p, ok, self)
	}
	if _, ok := sibling.Path("no-such-binary-here"); ok {
		t.Fatal("found a file that does not exist")
	}
	if _, ok := sibling.Path("."); ok {
		t.Fatal("a directory is not a binary")
	}
}
