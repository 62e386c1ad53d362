// Command kiln-core is the full kiln binary: the server, the worker, the
// load generators and the compiler wrapper's remote side. Users run it
// through cmd/kiln (the small `kiln` command), which answers local compiler
// calls itself and execs kiln-core for everything else; its commands are
// therefore documented as `kiln ...`. main wires packages together;
// nothing imports it.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/worker/runner"
)

func main() {
	// First of all: a sandboxed action's init is a copy of this binary.
	runner.MaybeRunInit()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := &cobra.Command{
		Use:           "kiln",
		Short:         "kiln: remote execution and caching for Bazel and C/C++ builds",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServerCmd(), newWorkerCmd(), newBenchCmd())
	root.AddCommand(newWrapperCmds()...)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "kiln:", err)
		os.Exit(1)
	}
}
