package runner_test

import (
	"fmt"
	"os"
	"syscall"
)

// helperEnv names the helper that the test binary runs as instead of its
// tests, for commands that no shell tool does well.
const helperEnv = "KILN_RUNNER_TEST_HELPER"

// helperMain runs the helper named by helperEnv, if any, and exits.
func helperMain() {
	switch os.Getenv(helperEnv) {
	case "":
		return
	case "spawn":
		// Start up to 1000 sleeping children and print how many started:
		// a fork bomb that counts.
		n := 0
		for ; n < 1000; n++ {
			if _, err := syscall.ForkExec("/bin/sleep", []string{"sleep", "100"}, &syscall.ProcAttr{}); err != nil {
				fmt.Printf("%d %v\n", n, err)
				os.Exit(0)
			}
		}
		fmt.Printf("%d\n", n)
		os.Exit(0)
	default:
		fmt.Fprintf(os.Stderr, "unknown helper %q\n", os.Getenv(helperEnv))
		os.Exit(2)
	}
}
