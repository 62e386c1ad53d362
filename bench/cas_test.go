package bench_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/bench"
)

// summary is the part of RunCAS's JSON output that the tests check.
type summary struct {
	RunID  string `json:"run_id"`
	Error  string `json:"error"`
	Phases []struct {
		Name     string  `json:"name"`
		Requests int     `json:"requests"`
		Blobs    int     `json:"blobs"`
		Bytes    int64   `json:"bytes"`
		P50      float64 `json:"p50_ms"`
		P99      float64 `json:"p99_ms"`
		Skipped  string  `json:"skipped"`
	} `json:"phases"`
}

// smallConfig is a run that takes well under a second against a local
// server: 200 small blobs in batches of 64 KiB, 2 large blobs of 3 MiB
// (three full chunks and a partial one), 20 actions.
func smallConfig(server string) bench.CASConfig {
	cfg := bench.DefaultCASConfig(server)
	cfg.SmallCount = 200
	cfg.SmallMin = 1
	cfg.SmallMax = 16 << 10
	cfg.BatchBytes = 64 << 10
	cfg.FindMissingBatch = 64
	cfg.LargeCount = 2
	cfg.LargeSize = 3<<20 + 12345
	cfg.ActionCount = 20
	cfg.Concurrency = 4
	cfg.JSON = true
	return cfg
}

// testServer returns the address of the REAPI server to benchmark, from
// KILN_TEST_SERVER, or skips the test.
func testServer(t *testing.T) string {
	addr := os.Getenv("KILN_TEST_SERVER")
	if addr == "" {
		t.Skip("KILN_TEST_SERVER is not set; set it to a REAPI server address (grpc://host:port) to run this test")
	}
	return addr
}

func TestRunCAS(t *testing.T) {
	t.Run("AllPhases", func(t *testing.T) {
		// A small run passes every phase and reports what it did.
		cfg := smallConfig(testServer(t))
		var out bytes.Buffer
		if err := bench.RunCAS(context.Background(), cfg, &out); err != nil {
			t.Fatalf("RunCAS: %v\n%s", err, out.String())
		}
		var s summary
		if err := json.Unmarshal(out.Bytes(), &s); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, out.String())
		}
		want := []struct {
			name         string
			minReqs      int
			blobs        int
			movesContent bool
		}{
			{"FindMissingBlobs/cold", 4, 200, false}, // 200 digests in batches of 64
			{"BatchUpdateBlobs", 2, 200, true},
			{"FindMissingBlobs/warm", 4, 200, false},
			{"BatchReadBlobs", 2, 200, true},
			{"ByteStream.Write", 2, 2, true},
			{"ByteStream.Read", 2, 2, true},
			{"UpdateActionResult", 20, 0, false},
			{"GetActionResult", 20, 0, false},
		}
		if len(s.Phases) != len(want) {
			t.Fatalf("got %d phases, want %d:\n%s", len(s.Phases), len(want), out.String())
		}
		for i, w := range want {
			p := s.Phases[i]
			if p.Skipped != "" {
				t.Errorf("phase %s skipped: %s", w.name, p.Skipped)
				continue
			}
			if p.Name != w.name || p.Requests < w.minReqs || p.Blobs != w.blobs || (p.Bytes > 0) != w.movesContent {
				t.Errorf("phase %d = %+v, want name %s, at least %d requests, %d blobs, moves content %v", i, p, w.name, w.minReqs, w.blobs, w.movesContent)
			}
			if p.P50 <= 0 || p.P99 < p.P50 {
				t.Errorf("phase %s: p50 %vms, p99 %vms", p.Name, p.P50, p.P99)
			}
		}
	})

	t.Run("RerunIsDetected", func(t *testing.T) {
		// Reusing a run id means the blobs are already there, which the
		// first phase must notice rather than measure cache hits.
		cfg := smallConfig(testServer(t))
		cfg.SmallCount, cfg.LargeCount, cfg.ActionCount = 10, 0, 0
		cfg.RunID = "rerun-" + rand.Text()
		if err := bench.RunCAS(context.Background(), cfg, &bytes.Buffer{}); err != nil {
			t.Fatalf("first run: %v", err)
		}
		var out bytes.Buffer
		err := bench.RunCAS(context.Background(), cfg, &out)
		if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "FindMissingBlobs/cold: request 1 of 1: server reports 10 of 10 blobs present that were never uploaded") {
			t.Fatalf("second run: got %v, want Internal from FindMissingBlobs/cold", err)
		}
		var s summary
		if err := json.Unmarshal(out.Bytes(), &s); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, out.String())
		}
		if s.Error != err.Error() {
			t.Errorf("JSON error = %q, want %q", s.Error, err.Error())
		}
	})

	t.Run("TextReport", func(t *testing.T) {
		// Without JSON every phase is one line of the table.
		cfg := smallConfig(testServer(t))
		cfg.JSON = false
		var out bytes.Buffer
		if err := bench.RunCAS(context.Background(), cfg, &out); err != nil {
			t.Fatalf("RunCAS: %v\n%s", err, out.String())
		}
		for _, want := range []string{"server capabilities: ", "verify reads: on", "\nphase ", "\nFindMissingBlobs/cold ", "\nGetActionResult "} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("report lacks %q:\n%s", want, out.String())
			}
		}
	})
}

func TestRunCASInvalidConfig(t *testing.T) {
	// Bad settings are refused before anything is dialed, naming the flag.
	for _, tc := range []struct {
		name   string
		change func(*bench.CASConfig)
		want   string
	}{
		{"NoServer", func(c *bench.CASConfig) { c.Server = "" }, "server: no address given"},
		{"ZeroConcurrency", func(c *bench.CASConfig) { c.Concurrency = 0 }, "concurrency 0: must be at least 1"},
		{"EmptySmallBlobs", func(c *bench.CASConfig) { c.SmallMin = 0 }, "small-min 0: must be at least 1 byte"},
		{"MaxBelowMin", func(c *bench.CASConfig) { c.SmallMin, c.SmallMax = 10, 9 }, "small-max 9: must not be below small-min 10"},
		{"NegativeLarge", func(c *bench.CASConfig) { c.LargeCount = -1 }, "large -1: must not be negative"},
		{"ActionsWithoutBlobs", func(c *bench.CASConfig) { c.SmallCount = 0 }, "actions 1000: need at least one small blob for the results to refer to"},
		{"ReservedInstance", func(c *bench.CASConfig) { c.Instance = "a/blobs" }, `rpc error: code = InvalidArgument desc = instance name "a/blobs": segment "blobs" is not allowed`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := bench.DefaultCASConfig("127.0.0.1:1")
			tc.change(&cfg)
			err := bench.RunCAS(context.Background(), cfg, &bytes.Buffer{})
			if err == nil || err.Error() != tc.want {
				t.Fatalf("RunCAS = %v, want %q", err, tc.want)
			}
		})
	}
}
