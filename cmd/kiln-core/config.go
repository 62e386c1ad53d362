package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/kiln-build/kiln/internal/units"
)

// Config is kiln's configuration file: one format for every role, each
// role in its own section. Parsing is strict: an unknown key is an error.
// Every field has a default; a flag given on the command line overrides the
// file.
type Config struct {
	// Server configures `kiln server`.
	Server ServerConfig `yaml:"server"`
}

// ServerConfig is the `server:` section.
type ServerConfig struct {
	// GRPCListen is the address of the gRPC port (all REAPI services).
	GRPCListen string `yaml:"grpc_listen"`
	// HTTPListen is the address of the HTTP port: /healthz and /metrics.
	HTTPListen string `yaml:"http_listen"`
	// Data is the directory of the disk store. Default: the user's cache
	// directory + /kiln.
	Data string `yaml:"data"`
	// Store is "disk" (persistent, the default) or "memory" (lost on exit;
	// for tests and benchmarks).
	Store string `yaml:"store"`
	// MaxSize bounds the bytes stored (CAS and action cache together);
	// least recently used blobs are evicted beyond it. Human units.
	MaxSize string `yaml:"max_size"`
	// MaxBlobSize refuses single blobs larger than this. Default: no limit
	// beyond MaxSize.
	MaxBlobSize string `yaml:"max_blob_size"`
	// WriteBackBuffer is how much memory the disk store may use for small
	// blobs (up to 64 KiB) that are acknowledged and not yet written to
	// their files; 0 writes every blob before acknowledging it. A crash
	// loses at most this buffer, which clients see as missing blobs and
	// upload again.
	WriteBackBuffer string `yaml:"write_back_buffer"`
	// ResumeWindow is how long a broken ByteStream upload waits for its
	// client to resume it before it is abandoned.
	ResumeWindow string `yaml:"resume_window"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
	// Workers is the number of action slots of the in-process worker that
	// runs beside the server (the embedded default is one per core); 0
	// disables it, for a server that only serves remote workers.
	Workers *int `yaml:"workers"`
	// Sandbox is how the in-process worker runs actions: "auto" (in the
	// namespace sandbox if this machine can, else directly on the host
	// with a warning), "on" (the sandbox or refuse to start) or "none"
	// (directly on the host: faster by 6-10 ms per action, for trusted
	// clients only).
	Sandbox string `yaml:"sandbox"`
	// WorkerCacheSize bounds the in-process worker's file cache.
	WorkerCacheSize string `yaml:"worker_cache_size"`
	// PlatformGrace: for this long after start-up (or after the last
	// matching worker left) an action no connected worker can run gets
	// UNAVAILABLE, so clients retry; after it, FAILED_PRECONDITION.
	PlatformGrace string `yaml:"platform_grace"`
	// WorkerTimeout is how long a worker may stay silent before its
	// actions are requeued on others.
	WorkerTimeout string `yaml:"worker_timeout"`
	// DefaultTimeout applies to actions that set no timeout; MaxTimeout
	// caps every action's timeout (in-process worker).
	DefaultTimeout string `yaml:"default_timeout"`
	MaxTimeout     string `yaml:"max_timeout"`
}

// defaultConfig returns the embedded default configuration.
func defaultConfig() Config {
	return Config{Server: ServerConfig{
		GRPCListen:      "127.0.0.1:8980",
		HTTPListen:      "127.0.0.1:8981",
		Data:            defaultDataDir(),
		Store:           "disk",
		MaxSize:         "10GiB",
		ResumeWindow:    "1m",
		WriteBackBuffer: "128MiB",
		LogLevel:        "info",
		WorkerCacheSize: "10GiB",
		Sandbox:         "auto",
		PlatformGrace:   "1m",
		WorkerTimeout:   "30s",
		DefaultTimeout:  "15m",
		MaxTimeout:      "1h",
	}}
}

func defaultDataDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = filepath.Join(os.TempDir(), "kiln-cache")
	}
	return filepath.Join(dir, "kiln")
}

// loadConfig reads path over the defaults. An empty path returns the
// defaults.
func loadConfig(path string) (Config, error) {
	cfg := defaultConfig()
	if path == "" {
		return cfg, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	if err := parseConfig(data, &cfg); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// parseConfig decodes YAML strictly into cfg: unknown keys, several
// documents or values of the wrong type are errors.
func parseConfig(data []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		if err.Error() == "EOF" {
			return nil // an empty file keeps the defaults
		}
		return err
	}
	var extra any
	if dec.Decode(&extra) == nil {
		return fmt.Errorf("more than one YAML document")
	}
	return nil
}

// serverSettings is ServerConfig with every value parsed and checked.
type serverSettings struct {
	grpcListen, httpListen string
	data                   string
	store                  string
	maxSize, maxBlobSize   int64
	writeBackBuffer        int64
	resumeWindow           time.Duration
	logLevel               string
	workers                int
	sandbox                string
	workerCacheSize        int64
	platformGrace          time.Duration
	workerTimeout          time.Duration
	defaultTimeout         time.Duration
	maxTimeout             time.Duration
}

func (c ServerConfig) parse() (serverSettings, error) {
	s := serverSettings{grpcListen: c.GRPCListen, httpListen: c.HTTPListen, data: c.Data, store: c.Store, logLevel: c.LogLevel}
	var err error
	if s.maxSize, err = units.ParseSize(c.MaxSize); err != nil || s.maxSize <= 0 {
		return s, fmt.Errorf("max_size %q: want a positive size such as 10GiB", c.MaxSize)
	}
	if c.MaxBlobSize != "" {
		if s.maxBlobSize, err = units.ParseSize(c.MaxBlobSize); err != nil || s.maxBlobSize <= 0 {
			return s, fmt.Errorf("max_blob_size %q: want a positive size such as 1GiB", c.MaxBlobSize)
		}
	}
	if s.writeBackBuffer, err = units.ParseSize(c.WriteBackBuffer); err != nil || s.writeBackBuffer < 0 {
		return s, fmt.Errorf("write_back_buffer %q: want a size such as 128MiB, or 0", c.WriteBackBuffer)
	}
	if s.resumeWindow, err = time.ParseDuration(c.ResumeWindow); err != nil || s.resumeWindow < 0 {
		return s, fmt.Errorf("resume_window %q: want a duration such as 1m", c.ResumeWindow)
	}
	s.workers = runtime.NumCPU()
	if c.Workers != nil {
		s.workers = *c.Workers
	}
	if s.workers < 0 {
		return s, fmt.Errorf("workers %d: want 0 or more", s.workers)
	}
	switch s.sandbox = c.Sandbox; s.sandbox {
	case "auto", "on", "none":
	default:
		return s, fmt.Errorf("sandbox %q: want auto, on or none", c.Sandbox)
	}
	if s.workerCacheSize, err = units.ParseSize(c.WorkerCacheSize); err != nil || s.workerCacheSize <= 0 {
		return s, fmt.Errorf("worker_cache_size %q: want a positive size such as 10GiB", c.WorkerCacheSize)
	}
	for _, d := range []struct {
		name string
		in   string
		out  *time.Duration
	}{
		{"platform_grace", c.PlatformGrace, &s.platformGrace},
		{"worker_timeout", c.WorkerTimeout, &s.workerTimeout},
		{"default_timeout", c.DefaultTimeout, &s.defaultTimeout},
		{"max_timeout", c.MaxTimeout, &s.maxTimeout},
	} {
		if *d.out, err = time.ParseDuration(d.in); err != nil || *d.out <= 0 {
			return s, fmt.Errorf("%s %q: want a positive duration such as 30s", d.name, d.in)
		}
	}
	switch c.Store {
	case "disk", "memory":
	default:
		return s, fmt.Errorf("store %q: want disk or memory", c.Store)
	}
	if c.Store == "disk" && c.Data == "" {
		return s, fmt.Errorf("data: a directory is needed for the disk store")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return s, fmt.Errorf("log_level %q: want debug, info, warn or error", c.LogLevel)
	}
	return s, nil
}
