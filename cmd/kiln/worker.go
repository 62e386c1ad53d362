package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/api/workerpb"
	"github.com/kiln-build/kiln/internal/grpcaddr"
	"github.com/kiln-build/kiln/worker"
	"github.com/kiln-build/kiln/worker/runner"
)

// newWorkerCmd returns "kiln worker", a build machine that dials out to a
// server and runs the actions it is given.
func newWorkerCmd() *cobra.Command {
	var (
		server         string
		slots          = runtime.NumCPU()
		platform       []string
		workDir        string
		cacheSize      = int64(10 << 30)
		name           string
		defaultTimeout = 10 * time.Minute
		maxTimeout     = time.Hour
		logLevel       = "info"
	)
	cmd := &cobra.Command{
		Use:   "worker --server ADDR",
		Short: "Run actions for a kiln server on this machine",
		Long: `Run actions for a kiln server on this machine.

The worker dials out to the server (no inbound port is needed, so a machine
behind NAT can join), announces its platform properties and slot count, and
runs the actions it is assigned in build directories under --work-dir. Input
files come from a local cache there (--cache-size), hardlinked into each
build directory, so a file is downloaded once per machine.

Platform properties: OSFamily (from the OS), ISA (x86-64, aarch64, ...) and
sandbox=host are always announced; --platform KEY=VALUE adds properties, and
replaces the default of the same KEY. Repeat it for several values.

Commands run directly on the host (sandbox=host), as the worker's user, with
exactly the environment the action asks for.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			extra, err := parsePlatformFlags(platform)
			if err != nil {
				return err
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: want debug, info, warn or error", logLevel)
			}
			if slots < 1 {
				return fmt.Errorf("--slots %d: want at least 1", slots)
			}
			if cacheSize <= 0 {
				return fmt.Errorf("--cache-size must be more than 0")
			}
			if defaultTimeout < 0 || maxTimeout < 0 {
				return fmt.Errorf("timeouts must not be negative")
			}
			if workDir == "" {
				dir, err := os.UserCacheDir()
				if err != nil {
					return fmt.Errorf("no --work-dir and no user cache directory: %w", err)
				}
				workDir = filepath.Join(dir, "kiln-worker")
			}
			if name == "" {
				if name, err = os.Hostname(); err != nil {
					return fmt.Errorf("no --name and no hostname: %w", err)
				}
			}
			conn, err := grpcaddr.Dial(server)
			if err != nil {
				return err
			}
			defer conn.Close()
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			props := defaultWorkerProperties(extra)
			log.Info("kiln worker starting", "server", server, "name", name, "slots", slots,
				"work_dir", workDir, "platform", formatProperties(props))
			return worker.Run(cmd.Context(), worker.Config{
				Conn:           conn,
				Name:           name,
				Slots:          slots,
				Properties:     props,
				WorkDir:        workDir,
				CacheSize:      cacheSize,
				DefaultTimeout: defaultTimeout,
				MaxTimeout:     maxTimeout,
				Runner:         runner.NewHost(),
				Logger:         log,
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&server, "server", "", "kiln server: grpc://host:port or host:port (required)")
	f.IntVar(&slots, "slots", slots, "actions run at once")
	f.StringArrayVar(&platform, "platform", nil, "platform property KEY=VALUE to announce (repeatable)")
	f.StringVar(&workDir, "work-dir", "", "directory for build directories and the file cache (default: the user cache directory + /kiln-worker)")
	f.Var(sizeFlag{&cacheSize}, "cache-size", "size of the local file cache, e.g. 10GiB")
	f.StringVar(&name, "name", "", "worker name in logs and action metadata (default: the hostname)")
	f.DurationVar(&defaultTimeout, "default-timeout", defaultTimeout, "timeout of actions that set none (0: none)")
	f.DurationVar(&maxTimeout, "max-timeout", maxTimeout, "longest timeout any action gets (0: no cap)")
	f.StringVar(&logLevel, "log-level", logLevel, "debug, info, warn or error")
	_ = cmd.MarkFlagRequired("server") // cannot fail: the flag exists
	return cmd
}

// parsePlatformFlags parses --platform KEY=VALUE flags.
func parsePlatformFlags(flags []string) ([]*workerpb.Property, error) {
	var out []*workerpb.Property
	for _, kv := range flags {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--platform %q: want KEY=VALUE", kv)
		}
		out = append(out, &workerpb.Property{Name: k, Value: v})
	}
	return out, nil
}

// defaultWorkerProperties returns the properties a worker on this machine
// announces: OSFamily, ISA and sandbox=host, each replaced by the extra
// properties of the same name, followed by the extra ones.
func defaultWorkerProperties(extra []*workerpb.Property) []*workerpb.Property {
	overridden := map[string]bool{}
	for _, p := range extra {
		overridden[p.GetName()] = true
	}
	var out []*workerpb.Property
	for _, p := range []*workerpb.Property{
		{Name: "OSFamily", Value: runtime.GOOS},
		{Name: "ISA", Value: isaName(runtime.GOARCH)},
		{Name: "sandbox", Value: "host"},
	} {
		if !overridden[p.GetName()] {
			out = append(out, p)
		}
	}
	return append(out, extra...)
}

// isaName turns a GOARCH into the ISA name REAPI platforms use.
func isaName(goarch string) string {
	switch goarch {
	case "amd64":
		return "x86-64"
	case "386":
		return "x86-32"
	case "arm64":
		return "aarch64"
	}
	return goarch
}

func formatProperties(props []*workerpb.Property) string {
	parts := make([]string, len(props))
	for i, p := range props {
		parts[i] = p.GetName() + "=" + p.GetValue()
	}
	return strings.Join(parts, ",")
}
