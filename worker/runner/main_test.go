package runner_test

import (
	"os"
	"testing"

	"github.com/kiln-build/kiln/worker/runner"
)

// TestMain lets the Sandbox runner re-execute this test binary as its
// init, and the tests run it as a helper program (see helperMain).
func TestMain(m *testing.M) {
	runner.MaybeRunInit()
	helperMain()
	os.Exit(m.Run())
}
