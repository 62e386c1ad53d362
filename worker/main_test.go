package worker_test

import (
	"os"
	"testing"

	"github.com/kiln-build/kiln/worker/runner"
)

// TestMain lets runner.Sandbox re-execute this test binary as its init.
func TestMain(m *testing.M) {
	runner.MaybeRunInit()
	os.Exit(m.Run())
}
