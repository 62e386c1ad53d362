package bench_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/bench"
)

// execSummary is the part of RunExec's JSON output that the tests check.
type execSummary struct {
	RunID          string   `json:"run_id"`
	Command        []string `json:"command"`
	Platform       []string `json:"platform"`
	TimeoutSeconds float64  `json:"timeout_seconds"`
	Error          string   `json:"error"`
	Upload         *struct {
		Blobs    int `json:"blobs"`
		Present  int `json:"present"`
		Uploaded int `json:"uploaded"`
	} `json:"upload"`
	Results *struct {
		Completed           int     `json:"completed"`
		Seconds             float64 `json:"seconds"`
		ActionsPerSecond    float64 `json:"actions_per_second"`
		CachedResults       int     `json:"cached_results"`
		MeanCommandsRunning float64 `json:"mean_commands_running"`
		Latencies           []struct {
			Name    string  `json:"name"`
			Samples int     `json:"samples"`
			P50     float64 `json:"p50_ms"`
			P99     float64 `json:"p99_ms"`
			Max     float64 `json:"max_ms"`
		} `json:"latencies"`
	} `json:"results"`
}

// latency returns the named latency of s, failing the test if it is absent.
func (s *execSummary) latency(t *testing.T, name string) (samples int, p50, p99 float64) {
	t.Helper()
	for _, l := range s.Results.Latencies {
		if l.Name == name {
			return l.Samples, l.P50, l.P99
		}
	}
	t.Fatalf("no latency %q in the results", name)
	return 0, 0, 0
}

// runExec runs RunExec with JSON output and decodes the summary.
func runExec(t *testing.T, cfg bench.ExecConfig) (execSummary, error) {
	t.Helper()
	cfg.JSON = true
	var out bytes.Buffer
	err := bench.RunExec(context.Background(), cfg, &out)
	var s execSummary
	if jerr := json.Unmarshal(out.Bytes(), &s); jerr != nil {
		t.Fatalf("output is not JSON: %v\n%s", jerr, out.String())
	}
	if err != nil && s.Error != err.Error() {
		t.Errorf("JSON error = %q, want %q", s.Error, err.Error())
	}
	return s, err
}

// smallExecConfig is a run that takes about a second against a local
// server with an in-process worker: 20 actions, 4 at a time.
func smallExecConfig(server string) bench.ExecConfig {
	cfg := bench.DefaultExecConfig(server)
	cfg.Actions = 20
	cfg.Concurrency = 4
	return cfg
}

// TestRunExec runs against the real server in KILN_TEST_SERVER, which must
// execute actions on a worker with /bin/sh, cat and sleep.
func TestRunExec(t *testing.T) {
	t.Run("AllActionsSucceed", func(t *testing.T) {
		// Every action runs, none is a cache hit, and the server's metadata
		// yields a command time for each.
		s, err := runExec(t, smallExecConfig(testServer(t)))
		if err != nil {
			t.Fatalf("RunExec: %v", err)
		}
		if s.Upload == nil || s.Upload.Blobs != 3*20+1 || s.Upload.Uploaded < 3*20 {
			t.Errorf("upload = %+v, want 61 blobs, at least 60 uploaded (the Command may be present)", s.Upload)
		}
		r := s.Results
		if r == nil || r.Completed != 20 || r.CachedResults != 0 || r.ActionsPerSecond <= 0 {
			t.Fatalf("results = %+v, want 20 completed, 0 cached", r)
		}
		for _, name := range []string{"total", "command", "overhead"} {
			n, p50, p99 := s.latency(t, name)
			if n != 20 || p99 < p50 {
				t.Errorf("latency %s: %d samples, p50 %vms, p99 %vms; want 20 samples, p99 >= p50", name, n, p50, p99)
			}
		}
		if _, p50, _ := s.latency(t, "total"); p50 <= 0 {
			t.Errorf("total p50 = %vms, want > 0", p50)
		}
	})

	t.Run("SleepCountsAsCommand", func(t *testing.T) {
		// The sleep is part of the command's run time, not the overhead.
		cfg := smallExecConfig(testServer(t))
		cfg.Actions, cfg.Sleep = 4, 200*time.Millisecond
		s, err := runExec(t, cfg)
		if err != nil {
			t.Fatalf("RunExec: %v", err)
		}
		if _, p50, _ := s.latency(t, "command"); p50 < 200 {
			t.Errorf("command p50 = %vms, want at least the 200ms sleep", p50)
		}
		if s.TimeoutSeconds != 60.2 {
			t.Errorf("timeout = %vs, want 60.2s (60s plus the sleep)", s.TimeoutSeconds)
		}
	})

	t.Run("RerunIsCached", func(t *testing.T) {
		// With the run id reused the actions are known, so a server with an
		// action cache answers all of them from it, and the report says so.
		cfg := smallExecConfig(testServer(t))
		cfg.Actions = 5
		cfg.RunID = "rerun-" + rand.Text()
		if _, err := runExec(t, cfg); err != nil {
			t.Fatalf("first run: %v", err)
		}
		s, err := runExec(t, cfg)
		if err != nil {
			t.Fatalf("second run: %v", err)
		}
		if s.Upload.Uploaded != 0 || s.Results.CachedResults != 5 {
			t.Errorf("second run uploaded %d blobs and got %d cached results, want 0 and 5", s.Upload.Uploaded, s.Results.CachedResults)
		}
		if n, _, _ := s.latency(t, "command"); n != 0 {
			t.Errorf("command has %d samples, want 0: cached results describe an earlier execution", n)
		}
	})

	t.Run("TextReport", func(t *testing.T) {
		// Without JSON the report has its header, the capabilities and a
		// row per latency.
		cfg := smallExecConfig(testServer(t))
		var out bytes.Buffer
		if err := bench.RunExec(context.Background(), cfg, &out); err != nil {
			t.Fatalf("RunExec: %v\n%s", err, out.String())
		}
		for _, want := range []string{"kiln bench exec: server ", "execution yes", "command: /bin/sh -c 'cat in.txt > out.txt'", "\nexecuted 20 actions in ", "\nlatency ", "\ntotal ", "\ncommand ", "\noverhead ", "\nqueued ", "\ninput fetch ", "\nupload "} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("report lacks %q:\n%s", want, out.String())
			}
		}
	})
}

func TestRunExecInvalidConfig(t *testing.T) {
	// Bad settings are refused before anything is dialed, naming the flag.
	for _, tc := range []struct {
		name   string
		change func(*bench.ExecConfig)
		want   string
	}{
		{"NoServer", func(c *bench.ExecConfig) { c.Server = "" }, "server: no address given"},
		{"NoActions", func(c *bench.ExecConfig) { c.Actions = 0 }, "actions 0: must be at least 1"},
		{"ZeroConcurrency", func(c *bench.ExecConfig) { c.Concurrency = 0 }, "concurrency 0: must be at least 1"},
		{"NegativeSleep", func(c *bench.ExecConfig) { c.Sleep = -time.Second }, "sleep -1s: must not be negative"},
		{"PlatformWithoutValue", func(c *bench.ExecConfig) { c.Platform = []string{"OSFamily"} }, `platform "OSFamily": want name=value`},
		{"PlatformWithoutName", func(c *bench.ExecConfig) { c.Platform = []string{"=linux"} }, `platform "=linux": want name=value`},
		{"PlatformTwice", func(c *bench.ExecConfig) { c.Platform = []string{"os=linux", "arch=x86", "os=linux"} }, "platform os=linux: given twice"},
		{"ReservedInstance", func(c *bench.ExecConfig) { c.Instance = "a/blobs" }, `rpc error: code = InvalidArgument desc = instance name "a/blobs": segment "blobs" is not allowed`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := bench.DefaultExecConfig("127.0.0.1:1")
			tc.change(&cfg)
			err := bench.RunExec(context.Background(), cfg, &bytes.Buffer{})
			if err == nil || err.Error() != tc.want {
				t.Fatalf("RunExec = %v, want %q", err, tc.want)
			}
		})
	}
}
