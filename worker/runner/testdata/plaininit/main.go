// Command plaininit is a sandbox init without sandboxinit/nsenter: the
// sandbox must clone it into its namespaces.
package main

import "github.com/kiln-build/kiln/worker/runner/sandboxinit"

func main() {
	sandboxinit.MaybeRun()
}
