package worker

import (
	"os"
	"path/filepath"
	"testing"
)

func TestResolveInRoot(t *testing.T) {
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(root, "a/b"), 0o755)
	for name, target := range map[string]string{
		"a/up":      "..",               // root
		"a/abs":     root + "/a/b",      // absolute, inside root
		"a/out":     "../..",            // above root
		"a/absout":  "/etc",             // absolute, outside
		"a/sibling": root + "x/evil",    // prefix of root, but another directory
		"a/chain":   "up/a/up/../a/out", // ends above root through other links
		"loop":      "loop",
	} {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		rel  string
		want string // relative to root; "!" means errEscapes or a loop
	}{
		{"", ""},
		{"a/b", "a/b"},
		{"a/up/a/b", "a/b"},
		{"a/abs/c", "a/b/c"},
		{"a/missing/x", "a/missing/x"},
		{"a/out", "!"},
		{"a/out/x", "!"},
		{"a/absout/passwd", "!"},
		{"a/sibling", "!"},
		{"a/chain", "!"},
		{"loop", "!"},
		{"..", "!"},
	} {
		got, err := resolveInRoot(root, tc.rel)
		switch {
		case tc.want == "!" && err == nil:
			t.Errorf("%q resolved to %s, want an error", tc.rel, got)
		case tc.want != "!" && (err != nil || got != filepath.Join(root, tc.want)):
			t.Errorf("%q: %s, %v; want %s", tc.rel, got, err, filepath.Join(root, tc.want))
		}
	}
}

func TestRemoveTreeFixesPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "build")
	os.MkdirAll(filepath.Join(dir, "a/b"), 0o755)
	os.WriteFile(filepath.Join(dir, "a/b/f"), nil, 0o444)
	os.Chmod(filepath.Join(dir, "a/b"), 0o500)
	os.Chmod(filepath.Join(dir, "a"), 0o000)
	if err := removeTree(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s still exists", dir)
	}
}
