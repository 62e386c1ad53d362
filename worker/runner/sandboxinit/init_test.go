package sandboxinit_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/worker/runner/sandboxinit"
)

// The init's behaviour is tested through worker/runner's Sandbox; this
// covers what the package adds: errors that carry their gRPC code.
func TestLookPathCodes(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "tool"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "data"), []byte("x"), 0o644)
	if p, err := sandboxinit.LookPath("tool", "/", []string{"PATH=" + dir}); err != nil || p != filepath.Join(dir, "tool") {
		t.Fatalf("LookPath = %q, %v", p, err)
	}
	for _, tc := range []struct{ prog, want string }{
		{"missing", "not found in the command's PATH"},
		{"data", "is not executable"},
		{"./nowhere", "not found"},
	} {
		_, err := sandboxinit.LookPath(tc.prog, dir, []string{"PATH=" + dir})
		var e *sandboxinit.Error
		if !errors.As(err, &e) || e.Code != sandboxinit.CodeInvalidArgument || !strings.Contains(e.Message, tc.want) {
			t.Errorf("LookPath(%q): %v, want InvalidArgument containing %q", tc.prog, err, tc.want)
		}
	}
}
