// Command gen writes optab.h, the option table of the C fast path, from
// cmdline.Shape. Run by go generate in wrapper/fastpath; a test checks
// that the file is current.
package main

import (
	"fmt"
	"os"

	"github.com/kiln-build/kiln/wrapper/fastpath/optab"
)

func main() {
	out := "optab.h"
	if len(os.Args) > 1 {
		out = os.Args[1]
	}
	if err := os.WriteFile(out, []byte(optab.Header()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}
