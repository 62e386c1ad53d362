// Command plaininit is a would-be sandbox init for TestSandboxInitWithoutC,
// which builds it with CGO_ENABLED=0: without the C init.
package main

import "github.com/kiln-build/kiln/worker/runner/sandboxinit"

func main() {
	sandboxinit.MaybeRun()
}
