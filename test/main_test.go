package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// kilnPackages are the import paths of the binaries under test: the kiln command users run
// and kiln-core, which it execs for everything but local compiles.
var kilnPackages = []string{"github.com/kiln-build/kiln/cmd/kiln", "github.com/kiln-build/kiln/cmd/kiln-core"}

// binaryEnv names a prebuilt kiln binary to test instead of building ./cmd/kiln, for
// checking a release build or a binary built with other flags; kiln-core must be next to it.
const binaryEnv = "KILN_TEST_BINARY"

var (
	// binDir holds the kiln binary built for this run; TestMain removes it at the end.
	binDir string

	buildOnce sync.Once
	// kilnBin is the kiln binary under test, set by buildOnce; "" if there is none.
	kilnBin string
	// kilnMissing, when not empty, says why the tests that need kiln are skipped. It is set
	// only while cmd/kiln has no Go files at all: a build failure fails them (kilnErr).
	kilnMissing string
	// kilnErr is the build failure, with go build's output.
	kilnErr error
)

// TestMain provides the temporary directory that kiln is built into, once per run, by the
// first test that needs it (see kilnBinary), and removes it at the end.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	binDir, err = os.MkdirTemp("", "kiln-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "test: create directory for the kiln binary:", err)
		return 1
	}
	defer os.RemoveAll(binDir)
	return m.Run()
}

// kilnBinary returns the kiln binary to test: $KILN_TEST_BINARY if set, else ./cmd/kiln
// built on first use (with -race when the tests have it, so that a data race in the server
// makes it exit non-zero and fails the test). It skips t while cmd/kiln does not exist and
// fails it if the build fails.
func kilnBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(buildKiln)
	if kilnMissing != "" {
		t.Skip(kilnMissing)
	}
	if kilnErr != nil {
		t.Fatal(kilnErr)
	}
	return kilnBin
}

func buildKiln() {
	if bin := os.Getenv(binaryEnv); bin != "" {
		kilnBin, kilnErr = filepath.Abs(bin)
		return
	}
	// Tests run with their package directory as the working directory.
	if srcs, _ := filepath.Glob(filepath.Join("..", "cmd", "kiln", "*.go")); len(srcs) == 0 {
		kilnMissing = "cmd/kiln has no Go files yet: there is no kiln binary to test"
		return
	}
	bin := filepath.Join(binDir, "kiln")
	args := []string{"build", "-o", binDir + "/"}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, kilnPackages...)
	if out, err := exec.Command(goTool(), args...).CombinedOutput(); err != nil {
		kilnErr = fmt.Errorf("go %v: %v\n%s", args, err, out)
		return
	}
	kilnBin = bin
}

// goTool returns the go command: the one on PATH, else the one in $GOROOT or /usr/local/go
// (CI's machines have Go there without always having it on PATH).
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" {
		return filepath.Join(root, "bin", "go")
	}
	return "/usr/local/go/bin/go"
}
