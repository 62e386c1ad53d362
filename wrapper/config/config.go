// Package config is the configuration of the kiln cc compiler wrapper: a
// strict flat YAML file (see parseFlat) in the user's configuration directory
// ($XDG_CONFIG_HOME/kiln/client.yaml, else ~/.config/kiln/client.yaml)
// under environment variables (KILN_SERVER, ...), each value remembering
// where it came from so that `kiln config` can say.
//
// Loading costs a stat (and a read when the file exists): it runs on every
// compile, local ones included.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-build/kiln/internal/addr"
)

// Config is the effective client configuration.
type Config struct {
	// Server is the REAPI endpoint, grpc://host:port.
	Server string
	// Instance is the REAPI instance name.
	Instance string
	// ForceRemote makes any remote failure an error instead of a local
	// compile. For checking a setup; do not use it for everyday builds.
	ForceRemote bool
	// Fallback allows compiling locally when the remote side fails. With
	// Fallback off and ForceRemote off, a failure is still an error.
	Fallback bool
	// CacheOnly never executes remotely: the action cache is asked, and on
	// a miss the compile runs locally and its result is stored in the
	// cache. For machines that should share results but not load workers.
	CacheOnly bool
	// BaseDir is an absolute directory whose paths are made relative
	// (cmdline.Rebase), so that checkouts at different places share cache
	// entries. "" disables it.
	BaseDir string
	// Log is a file that gets one line per remote problem; "" for none.
	Log string
	// ConnectTimeout bounds connecting to the server; past it the compile
	// falls back.
	ConnectTimeout time.Duration
	// ExecuteTimeout bounds one whole remote compile (lookup, upload,
	// execution, download).
	ExecuteTimeout time.Duration
	// Daemon sends remote compiles to the user's kiln cc daemon (started
	// on first use), which keeps the server connection open; off, each
	// remote compile starts kiln-core.
	Daemon bool
	// DaemonIdle is how long the daemon waits for work before it exits.
	DaemonIdle time.Duration

	// Sources says, for each key, where its value came from: "default",
	// the file's path, or the environment variable's name.
	Sources map[string]string
	// File is the configuration file's path (which may not exist).
	File string
}

// Keys are the configuration keys in the order `kiln config` prints them.
var Keys = []string{"server", "instance", "force_remote", "fallback", "cache_only", "base_dir", "log", "connect_timeout", "execute_timeout", "daemon", "daemon_idle"}

// envNames maps keys to their environment variables.
var envNames = map[string]string{
	"server":          "KILN_SERVER",
	"instance":        "KILN_INSTANCE",
	"force_remote":    "KILN_FORCE_REMOTE",
	"fallback":        "KILN_FALLBACK",
	"cache_only":      "KILN_CACHE_ONLY",
	"base_dir":        "KILN_BASE_DIR",
	"log":             "KILN_LOG",
	"connect_timeout": "KILN_CONNECT_TIMEOUT",
	"execute_timeout": "KILN_EXECUTE_TIMEOUT",
	"daemon":          "KILN_DAEMON",
	"daemon_idle":     "KILN_DAEMON_IDLE",
}

// boolKeys are the keys whose values are booleans.
var boolKeys = map[string]bool{"force_remote": true, "fallback": true, "cache_only": true, "daemon": true}

// Default returns the built-in configuration.
func Default() Config {
	c := Config{
		Server:         "grpc://127.0.0.1:8980",
		Fallback:       true,
		ConnectTimeout: 2 * time.Second,
		ExecuteTimeout: 5 * time.Minute,
		Daemon:         true,
		DaemonIdle:     10 * time.Minute,
		Sources:        map[string]string{},
	}
	for _, k := range Keys {
		c.Sources[k] = "default"
	}
	return c
}

// FilePath returns where the configuration file is, from getenv's
// XDG_CONFIG_HOME or HOME.
func FilePath(getenv func(string) string) string {
	dir := getenv("XDG_CONFIG_HOME")
	if dir == "" || !filepath.IsAbs(dir) {
		dir = filepath.Join(getenv("HOME"), ".config")
	}
	return filepath.Join(dir, "kiln", "client.yaml")
}

// Load returns the defaults, overridden by the file at FilePath (absent is
// fine), overridden by the environment. A malformed file or variable is an
// error naming it.
func Load(getenv func(string) string) (Config, error) {
	c := Default()
	c.File = FilePath(getenv)
	data, err := os.ReadFile(c.File)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return c, fmt.Errorf("config %s: %w", c.File, err)
	default:
		vals, err := parseFlat(data)
		if err != nil {
			return c, fmt.Errorf("config %s: %w", c.File, err)
		}
		if err := c.applyFile(vals); err != nil {
			return c, fmt.Errorf("config %s: %w", c.File, err)
		}
	}
	for _, k := range Keys {
		v, ok := lookup(getenv, envNames[k])
		if !ok {
			continue
		}
		if err := c.set(k, v, envNames[k]); err != nil {
			return c, fmt.Errorf("environment %s: %w", envNames[k], err)
		}
	}
	if _, err := addr.Parse(c.Server); err != nil {
		return c, fmt.Errorf("server (from %s): %w", c.Sources["server"], err)
	}
	if c.BaseDir != "" && !filepath.IsAbs(c.BaseDir) {
		return c, fmt.Errorf("base_dir (from %s): %q is not absolute", c.Sources["base_dir"], c.BaseDir)
	}
	return c, nil
}

// lookup treats an empty variable as unset, as shells make it easy to
// leave one empty.
func lookup(getenv func(string) string, name string) (string, bool) {
	v := getenv(name)
	return v, v != ""
}

// applyFile sets the file's values: unknown keys and values of the wrong
// type are errors; an empty value keeps the default.
func (c *Config) applyFile(vals map[string]scalar) error {
	for k, v := range vals {
		if _, ok := envNames[k]; !ok {
			return fmt.Errorf("line %d: unknown key %q", v.line, k)
		}
	}
	for _, k := range Keys {
		v, ok := vals[k]
		if !ok || (v.text == "" && !v.quoted) {
			continue
		}
		text := v.text
		if boolKeys[k] {
			b, err := yamlBool(v)
			if err != nil {
				return fmt.Errorf("line %d: %s: %w", v.line, k, err)
			}
			text = strconv.FormatBool(b)
		}
		if err := c.set(k, text, c.File); err != nil {
			return fmt.Errorf("line %d: %s: %w", v.line, k, err)
		}
	}
	return nil
}

// set parses v for key k and records its source.
func (c *Config) set(k, v, source string) error {
	var err error
	switch k {
	case "server":
		c.Server = v
	case "instance":
		c.Instance = v
	case "base_dir":
		c.BaseDir = v
		if v != "" {
			c.BaseDir = filepath.Clean(v)
		}
	case "log":
		c.Log = v
	case "force_remote":
		c.ForceRemote, err = strconv.ParseBool(v)
	case "fallback":
		c.Fallback, err = strconv.ParseBool(v)
	case "cache_only":
		c.CacheOnly, err = strconv.ParseBool(v)
	case "connect_timeout":
		c.ConnectTimeout, err = parseDuration(v)
	case "execute_timeout":
		c.ExecuteTimeout, err = parseDuration(v)
	case "daemon":
		c.Daemon, err = strconv.ParseBool(v)
	case "daemon_idle":
		c.DaemonIdle, err = parseDuration(v)
	}
	if err != nil {
		return err
	}
	c.Sources[k] = source
	return nil
}

func parseDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, err
	}
	if d <= 0 {
		return 0, fmt.Errorf("duration %q must be positive", v)
	}
	return d, nil
}

// Value returns key k's value as text.
func (c *Config) Value(k string) string {
	switch k {
	case "server":
		return c.Server
	case "instance":
		return c.Instance
	case "force_remote":
		return strconv.FormatBool(c.ForceRemote)
	case "fallback":
		return strconv.FormatBool(c.Fallback)
	case "cache_only":
		return strconv.FormatBool(c.CacheOnly)
	case "base_dir":
		return c.BaseDir
	case "log":
		return c.Log
	case "connect_timeout":
		return c.ConnectTimeout.String()
	case "execute_timeout":
		return c.ExecuteTimeout.String()
	case "daemon":
		return strconv.FormatBool(c.Daemon)
	case "daemon_idle":
		return c.DaemonIdle.String()
	}
	return ""
}

// Format returns one "key: value  # source" line per key, valid YAML for
// client.yaml.
func (c *Config) Format() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# file: %s\n", c.File)
	for _, k := range Keys {
		v := c.Value(k)
		if !boolKeys[k] {
			v = strconv.Quote(v)
		}
		fmt.Fprintf(&b, "%s: %s  # %s\n", k, v, c.Sources[k])
	}
	return b.String()
}

// CacheDir is where the wrapper keeps its toolchain cache and statistics:
// $XDG_CACHE_HOME/kiln/cc, else ~/.cache/kiln/cc.
func CacheDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = filepath.Join(os.TempDir(), "kiln-cache-"+strconv.Itoa(os.Getuid()))
	}
	return filepath.Join(dir, "kiln", "cc")
}

// Logf appends one line, stamped with now and this process's pid, to the
// log file (the log key), if there is one. Failing to write is ignored: a
// log must not break a build.
func (c *Config) Logf(now time.Time, format string, args ...any) {
	if c.Log == "" {
		return
	}
	f, err := os.OpenFile(c.Log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	fmt.Fprintf(f, "%s kiln cc[%d]: %s\n", now.Format(time.RFC3339Nano), os.Getpid(), fmt.Sprintf(format, args...))
	f.Close()
}
