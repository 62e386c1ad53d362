package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/api/workerpb"
	"github.com/kiln-build/kiln/internal/sibling"
	"github.com/kiln-build/kiln/worker/runner"
)

// Values of kiln worker --sandbox.
const (
	sandboxAuto = "auto" // the sandbox if this machine can, else none with a warning
	sandboxOn   = "on"   // the sandbox, or refuse to start
	sandboxNone = "none" // commands run directly on the host
)

// sandboxFlags are kiln worker's sandbox flags.
type sandboxFlags struct {
	mode     string
	network  bool
	uid, gid int // -1: DefaultSandboxID as root, else the worker's own
	limits   runner.Limits
}

// defaultSandboxFlags are the defaults of kiln worker, and the settings of
// kiln server's in-process worker. The limits are capped at the process's
// own hard limits, which a sandbox cannot exceed.
func defaultSandboxFlags() sandboxFlags {
	return sandboxFlags{
		mode: sandboxAuto, uid: -1, gid: -1,
		limits: runner.Limits{
			Processes: capAtHardLimit(unix.RLIMIT_NPROC, 4096),
			OpenFiles: capAtHardLimit(unix.RLIMIT_NOFILE, 65536),
		},
	}
}

// capAtHardLimit returns n, or the hard limit of resource if lower.
func capAtHardLimit(resource int, n int64) int64 {
	var lim unix.Rlimit
	if unix.Getrlimit(resource, &lim) == nil && lim.Max < uint64(n) {
		return int64(lim.Max)
	}
	return n
}

func (f *sandboxFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.mode, "sandbox", f.mode, "auto: run actions in the sandbox if this machine can, else directly on the host; on: the sandbox or refuse to start; none: directly on the host")
	fs.BoolVar(&f.network, "sandbox-network", f.network, "let actions that ask for it (platform network=on) use the host's network")
	fs.IntVar(&f.uid, "sandbox-uid", f.uid, "uid that sandboxed actions run as (default: 65534 when the worker is root, else the worker's own)")
	fs.IntVar(&f.gid, "sandbox-gid", f.gid, "gid that sandboxed actions run as (default: 65534 when the worker is root, else the worker's own)")
	fs.Int64Var(&f.limits.Processes, "max-processes", f.limits.Processes, "processes and threads of one sandboxed action at once (0: no limit)")
	fs.Int64Var(&f.limits.OpenFiles, "max-open-files", f.limits.OpenFiles, "open files of each process of a sandboxed action (0: no limit)")
	fs.Var(sizeFlag{&f.limits.FileSizeBytes}, "max-file-size", "largest file a sandboxed action may write, stdout and stderr included, e.g. 10GiB (0: no limit)")
	fs.Var(sizeFlag{&f.limits.MemoryBytes}, "max-memory", "data memory of each process of a sandboxed action, e.g. 8GiB (0: no limit)")
}

// newRunner returns the runner the flags ask for, and the platform
// properties it lets the worker announce on top of
// defaultWorkerProperties. hide are the host paths that sandboxed actions
// must not see. With --sandbox=auto on a machine that cannot sandbox, the
// reason is logged and the host runner returned.
func (f *sandboxFlags) newRunner(log *slog.Logger, hide []string) (runner.Runner, []*workerpb.Property, error) {
	switch f.mode {
	case sandboxNone:
		return runner.NewHost(), nil, nil
	case sandboxAuto, sandboxOn:
	default:
		return nil, nil, fmt.Errorf("--sandbox %q: want %s, %s or %s", f.mode, sandboxAuto, sandboxOn, sandboxNone)
	}
	cfg := runner.SandboxConfig{UID: f.uid, GID: f.gid, AllowNetwork: f.network, Limits: f.limits, HidePaths: hide}
	// The small kiln command next to this binary is the actions' init: it
	// starts in a fraction of kiln-core's time.
	if front, ok := sibling.Path("kiln"); ok {
		cfg.Init = front
	}
	if cfg.UID < 0 {
		cfg.UID = os.Geteuid()
		if cfg.UID == 0 {
			cfg.UID = runner.DefaultSandboxID
		}
	}
	if cfg.GID < 0 {
		cfg.GID = os.Getegid()
		if os.Geteuid() == 0 {
			cfg.GID = runner.DefaultSandboxID
		}
	}
	sb, err := runner.NewSandbox(cfg)
	if err != nil {
		if f.mode == sandboxOn {
			return nil, nil, fmt.Errorf("--sandbox=on: %w", err)
		}
		log.Warn("running actions directly on the host, without a sandbox (kiln worker --sandbox=on would refuse to start)", "err", err)
		return runner.NewHost(), nil, nil
	}
	var props []*workerpb.Property
	for _, p := range sb.Properties() {
		props = append(props, &workerpb.Property{Name: p.GetName(), Value: p.GetValue()})
	}
	log.Info("actions run in the sandbox", "uid", cfg.UID, "gid", cfg.GID, "network", f.network,
		"max_processes", cfg.Limits.Processes, "max_open_files", cfg.Limits.OpenFiles,
		"max_file_size", cfg.Limits.FileSizeBytes, "max_memory", cfg.Limits.MemoryBytes)
	return sb, props, nil
}

// withSandboxProperties adds the sandbox's properties to props, except
// those already there and those whose name --platform set (an operator's
// --platform sandbox=host keeps hermetic actions away from this worker).
func withSandboxProperties(props, extra, sandbox []*workerpb.Property) []*workerpb.Property {
	overridden := map[string]bool{}
	for _, p := range extra {
		overridden[p.GetName()] = true
	}
	have := map[string]bool{}
	for _, p := range props {
		have[p.GetName()+"="+p.GetValue()] = true
	}
	for _, p := range sandbox {
		if !overridden[p.GetName()] && !have[p.GetName()+"="+p.GetValue()] {
			props = append(props, p)
		}
	}
	return props
}

// localRunner returns the runner of kiln server's in-process worker and the
// properties it announces: the sandbox with kiln worker's defaults when
// this machine can sandbox, hiding the server's data directory (its
// storage and the worker's directory), else the host runner.
func localRunner(log *slog.Logger, data, mode string) (runner.Runner, []*workerpb.Property, error) {
	f := defaultSandboxFlags()
	f.mode = mode
	r, props, err := f.newRunner(log, []string{data, filepath.Join(data, "worker")})
	if err != nil {
		return nil, nil, err
	}
	return r, withSandboxProperties(defaultWorkerProperties(nil), nil, props), nil
}
