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
		sandbox        = defaultSandboxFlags()
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
sandbox=host are always announced; with the sandbox also sandbox=hermetic,
network=off, and network=on with --sandbox-network. --platform KEY=VALUE
adds properties, and replaces the defaults of the same KEY. Repeat it for
several values.

Commands run with exactly the environment the action asks for. By default
(--sandbox=auto) they run in a sandbox when this machine can (Linux user
namespaces; kiln checks at start): new user, mount, PID, network, IPC and
UTS namespaces, as an unprivileged user (--sandbox-uid), with limits
(--max-processes, --max-open-files, --max-file-size, --max-memory), and
without network unless the action asks for network=on and the worker
allows it (--sandbox-network). The action's platform property sandbox
chooses the mode:

  sandbox=host      (the default) the host's filesystem read-only, the
                    build directory writable, a private /tmp; the work
                    directory hidden. What Bazel's C++ toolchains need.
  sandbox=hermetic  the input root is the whole filesystem, plus /dev,
                    /proc and an empty /tmp: the toolchain comes with the
                    action.

With --sandbox=none commands run directly on the host, as the worker's
user (sandbox=host is still announced).`,
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
			// The work directory exists before the sandbox is checked,
			// so that actions never see it.
			if err := os.MkdirAll(workDir, 0o755); err != nil {
				return err
			}
			run, sandboxProps, err := sandbox.newRunner(log, []string{workDir})
			if err != nil {
				return err
			}
			props := withSandboxProperties(defaultWorkerProperties(extra), extra, sandboxProps)
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
				Runner:         run,
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
	sandbox.register(f)
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
