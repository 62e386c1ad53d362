package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/internal/sibling"
	"github.com/kiln-build/kiln/wrapper/ccd/daemon"
	"github.com/kiln-build/kiln/wrapper/client"
	"github.com/kiln-build/kiln/wrapper/config"
	"github.com/kiln-build/kiln/wrapper/stats"
)

// compilerNames are the programs install-bins links to kiln, besides
// their versioned variants (gcc-12, g++-12, clang-16, ...) found in PATH.
var compilerNames = []string{"gcc", "g++", "cc", "c++", "clang", "clang++"}

// newWrapperCmds returns the compiler wrapper's commands: cc, config,
// stats and install-bins. Users reach them through cmd/kiln, which decides
// local compiles itself and hands remote ones to this cc.
func newWrapperCmds() []*cobra.Command {
	return []*cobra.Command{newCCCmd(), newCCDaemonCmd(), newClientConfigCmd(), newStatsCmd(), newInstallBinsCmd()}
}

// newCCDaemonCmd is the kiln cc daemon, started by the kiln command on the
// first remote compile (see wrapper/ccd).
func newCCDaemonCmd() *cobra.Command {
	var d daemon.Daemon
	c := &cobra.Command{
		Use:    "cc-daemon",
		Short:  "Serve the remote compiles of kiln cc for this user (started by kiln cc itself)",
		Args:   cobra.NoArgs,
		Hidden: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if d.Socket == "" || d.CacheDir == "" {
				return errors.New("--socket and --cache-dir are required")
			}
			self, err := frontPath()
			if err != nil {
				return err
			}
			d.Self = self
			d.Log = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			err = d.Serve(cmd.Context())
			if errors.Is(err, daemon.ErrRunning) {
				return nil
			}
			return err
		},
	}
	c.Flags().StringVar(&d.Socket, "socket", "", "Unix socket to serve")
	c.Flags().StringVar(&d.CacheDir, "cache-dir", "", "the wrapper's cache directory")
	c.Flags().DurationVar(&d.Idle, "idle", 10*time.Minute, "exit after this long without requests")
	return c
}

// frontPath is the kiln command next to this kiln-core (what install-bins
// links to, and what compiler lookups skip), else kiln-core itself.
func frontPath() (string, error) {
	if front, ok := sibling.Path("kiln"); ok {
		return front, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(self)
}

func newCCCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "cc COMPILER ARGS...",
		Short: "Compile with gcc or clang on the kiln cluster, locally when that is not possible",
		Long: `cc runs one compiler command. Compiles kiln can send (one C or C++ source,
-c or -S, known flags) are preprocessed locally, compiled on the server in a
hermetic sandbox holding the local toolchain, and looked up in the action
cache first. Everything else (linking, configure tests, -E, ...) runs the
compiler directly. Any remote failure compiles locally with one warning
per 10 minutes, unless force_remote is set. See kiln config and kiln stats.`,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 || args[0] == "--help" || args[0] == "-h" {
				return cmd.Help()
			}
			cfg, err := config.Load(os.Getenv)
			if err != nil {
				return err
			}
			self, _ := frontPath()
			cache := config.CacheDir()
			w := &client.Wrapper{
				Config:   cfg,
				Stats:    stats.Open(cache),
				CacheDir: filepath.Join(cache, "toolchains"),
				Self:     self,
				Getenv:   os.Getenv,
				Stdout:   os.Stdout,
				Stderr:   os.Stderr,
				Exec:     syscall.Exec,
				Now:      time.Now,
			}
			os.Exit(w.Run(cmd.Context(), args[0], args[1:]))
			return nil
		},
	}
}

func newClientConfigCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "config",
		Short: "Print the effective kiln cc configuration and where each value comes from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(os.Getenv)
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), cfg.Format())
			return nil
		},
	}
}

func newStatsCmd() *cobra.Command {
	var asJSON, zero bool
	c := &cobra.Command{
		Use:   "stats",
		Short: "Print (or reset) the kiln cc statistics of this user",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st := stats.Open(config.CacheDir())
			if zero {
				return st.Zero()
			}
			s, err := st.Read()
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(s)
			}
			fmt.Fprint(cmd.OutOrStdout(), s.Format())
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().BoolVar(&zero, "zero", false, "reset the counters")
	return c
}

func newInstallBinsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "install-bins DIR",
		Short: "Link gcc, g++, cc, c++, clang, clang++ (and versioned names in PATH) in DIR to kiln",
		Long: `install-bins makes DIR a directory to put first in PATH: each compiler
name in it is a symbolic link to this kiln binary, which then acts as
"kiln cc NAME" and runs the next NAME in PATH that is not kiln itself.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			self, err := frontPath()
			if err != nil {
				return err
			}
			names := compilerLinkNames(os.Getenv("PATH"), self)
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return err
			}
			for _, n := range names {
				p := filepath.Join(args[0], n)
				if target, err := os.Readlink(p); err == nil && target == self {
					continue
				}
				os.Remove(p)
				if err := os.Symlink(self, p); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "linked %s in %s\n", strings.Join(names, " "), args[0])
			return nil
		},
	}
}

// compilerLinkNames returns the fixed compiler names plus the versioned
// ones (gcc-12, x86_64-linux-gnu-gcc-12, clang++-16) found in pathEnv.
func compilerLinkNames(pathEnv, self string) []string {
	set := map[string]bool{}
	for _, n := range compilerNames {
		set[n] = true
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			n := e.Name()
			for _, base := range compilerNames {
				if strings.HasPrefix(n, base+"-") && isVersion(n[len(base)+1:]) {
					set[n] = true
				}
			}
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func isVersion(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if (r < '0' || r > '9') && r != '.' {
			return false
		}
	}
	return true
}
