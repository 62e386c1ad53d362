package main

import (
	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/bench"
	"github.com/kiln-build/kiln/internal/units"
)

// newBenchCmd returns "kiln bench", the load generators. They speak only the
// standard REAPI, so they measure kiln and any other server alike.
func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Generate load against a REAPI server and measure it",
	}
	cmd.AddCommand(newBenchCASCmd(), newBenchExecCmd())
	return cmd
}

func newBenchCASCmd() *cobra.Command {
	cfg := bench.DefaultCASConfig("")
	cmd := &cobra.Command{
		Use:   "cas --server ADDR",
		Short: "Benchmark the CAS, ByteStream and action cache of a REAPI server",
		Long: `Benchmark the CAS, ByteStream and action cache of any REAPI v2 server.

All blobs are generated (random, incompressible, unique to this run) and
hashed before timing starts, so the run holds them in memory: about
small*(small-min+small-max)/2 + large*large-size bytes (1.3 GiB by default).
The server keeps what is uploaded.

Phases, in order: FindMissingBlobs (all must be missing), BatchUpdateBlobs,
FindMissingBlobs (none may be missing), BatchReadBlobs, ByteStream Write and
Read of the large blobs, then UpdateActionResult and GetActionResult of
synthetic actions whose results refer to the small blobs. Each phase prints
requests, blobs, MB (10^6 bytes), time, requests/s, blobs/s, MB/s and the
p50 and p99 latency of a single request (a batch counts as one request).

Sizes accept units: 512, 64KiB, 1.5M; k, M, G and the KiB forms are binary,
KB, MB and GB decimal.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return bench.RunCAS(cmd.Context(), cfg, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Server, "server", "", "REAPI server: grpc://host:port or host:port (required)")
	f.StringVar(&cfg.Instance, "instance", cfg.Instance, "REAPI instance name")
	f.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "requests in flight per phase (ByteStream phases: at most --large)")
	f.IntVar(&cfg.SmallCount, "small", cfg.SmallCount, "number of small blobs (batch APIs); 0 skips their phases")
	f.Var(sizeFlag{&cfg.SmallMin}, "small-min", "smallest small blob")
	f.Var(sizeFlag{&cfg.SmallMax}, "small-max", "largest small blob (sizes are uniform in [small-min, small-max])")
	f.IntVar(&cfg.LargeCount, "large", cfg.LargeCount, "number of large blobs (ByteStream); 0 skips their phases")
	f.Var(sizeFlag{&cfg.LargeSize}, "large-size", "size of each large blob")
	f.Var(sizeFlag{&cfg.BatchBytes}, "batch-bytes", "largest batch request, content plus 128 bytes per blob (the server's max_batch_total_size_bytes lowers it)")
	f.IntVar(&cfg.ActionCount, "actions", cfg.ActionCount, "number of synthetic actions for the action cache phases; 0 skips them")
	f.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the blob sizes and content (a random run id is mixed into the content)")
	f.BoolVar(&cfg.VerifyReads, "verify-reads", cfg.VerifyReads, "compare BatchReadBlobs data and SHA-256 ByteStream reads (client hashing counts in ByteStream.Read times)")
	f.BoolVar(&cfg.JSON, "json", cfg.JSON, "print a JSON summary instead of the report")
	_ = cmd.MarkFlagRequired("server") // cannot fail: the flag exists
	return cmd
}

func newBenchExecCmd() *cobra.Command {
	cfg := bench.DefaultExecConfig("")
	cmd := &cobra.Command{
		Use:   "exec --server ADDR",
		Short: "Benchmark remote execution on a REAPI server",
		Long: `Benchmark remote execution on any REAPI v2 server.

Before timing, the benchmark builds --actions actions, each with its own
input file in.txt (content unique to this run, so no action can be an action
cache hit) and the command

    /bin/sh -c 'cat in.txt > out.txt'

with PATH=/usr/bin:/bin, the --platform properties and a timeout of 60s
(plus --sleep). It uploads everything with FindMissingBlobs and
BatchUpdateBlobs. Then it calls Execute for every action, --concurrency at a
time, reads each Operation stream until the operation is done, and checks
that the status is OK, the exit code 0, and that out.txt has the digest of
in.txt.

It prints actions/s over the timed part, the number of cached results
(expected 0), how many commands ran at once on average, and the p50, p99 and
maximum of: total (the Execute call until the final Operation, measured
here), command (execution_start..completed in the result's metadata),
overhead (total minus command), queued (queued..worker_start), worker
(worker_start..completed), input fetch and output upload. All but total come
from the server's and workers' clocks.

--sleep D makes every command sleep D first (sleep(1) must accept fractions
of a second for D below 1s): with S execution slots a run then takes about
actions*D/S, which shows how many actions the server runs at once.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return bench.RunExec(cmd.Context(), cfg, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Server, "server", "", "REAPI server: grpc://host:port or host:port (required)")
	f.StringVar(&cfg.Instance, "instance", cfg.Instance, "REAPI instance name")
	f.IntVar(&cfg.Actions, "actions", cfg.Actions, "number of actions to execute, each once")
	f.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "Execute calls in flight")
	f.DurationVar(&cfg.Sleep, "sleep", cfg.Sleep, "make every command sleep this long first, to show how many run at once")
	f.StringArrayVar(&cfg.Platform, "platform", nil, "platform property name=value of every action; repeat for more")
	f.BoolVar(&cfg.JSON, "json", cfg.JSON, "print a JSON summary instead of the report")
	_ = cmd.MarkFlagRequired("server") // cannot fail: the flag exists
	return cmd
}

// sizeFlag is a flag holding a byte count written with units.ParseSize.
type sizeFlag struct{ p *int64 }

func (s sizeFlag) String() string {
	if s.p == nil {
		return "0"
	}
	return units.FormatSize(*s.p)
}

func (s sizeFlag) Set(v string) error {
	n, err := units.ParseSize(v)
	if err != nil {
		return err
	}
	*s.p = n
	return nil
}

func (s sizeFlag) Type() string { return "size" }
