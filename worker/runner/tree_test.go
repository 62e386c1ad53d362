package runner_test

import (
	"errors"
	"testing"

	"github.com/kiln-build/kiln/worker/runner/runnertest"
)

// addToTree is runnertest.AddToTree, failing the test on errors.
func addToTree(t testing.TB, root string, paths ...string) {
	t.Helper()
	if err := runnertest.AddToTree(root, paths...); err != nil {
		t.Fatal(err)
	}
}

// gccTree is runnertest.GCCTree, skipping the test without gcc.
func gccTree(t testing.TB, root string, withAs bool) {
	t.Helper()
	err := runnertest.GCCTree(root, withAs)
	if errors.Is(err, runnertest.ErrNoToolchain) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
}
