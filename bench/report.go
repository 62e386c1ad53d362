package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	smpb "github.com/bazelbuild/remote-apis/build/bazel/semver"

	"github.com/kiln-build/kiln/internal/units"
)

// report prints a run's results: as human-readable lines while the run
// goes, or, with CASConfig.JSON, as one JSON document (casSummary) at the
// end, including the error of a failed run.
type report struct {
	out     io.Writer
	json    bool
	summary casSummary
}

// casSummary is the JSON output of RunCAS. Sizes are bytes, times seconds
// or milliseconds as the field names say, and MB is 10^6 bytes.
type casSummary struct {
	Server           string      `json:"server"`
	Instance         string      `json:"instance"`
	RunID            string      `json:"run_id"`
	Seed             uint64      `json:"seed"`
	Concurrency      int         `json:"concurrency"`
	GOMAXPROCS       int         `json:"gomaxprocs"`
	SmallCount       int         `json:"small_count"`
	SmallMinBytes    int64       `json:"small_min_bytes"`
	SmallMaxBytes    int64       `json:"small_max_bytes"`
	SmallTotalBytes  int64       `json:"small_total_bytes"`
	LargeCount       int         `json:"large_count"`
	LargeBytes       int64       `json:"large_bytes"`
	ActionCount      int         `json:"action_count"`
	BatchLimitBytes  int64       `json:"batch_limit_bytes"`
	FindMissingBatch int         `json:"find_missing_batch"`
	ChunkBytes       int         `json:"chunk_bytes"`
	VerifyReads      bool        `json:"verify_reads"`
	Capabilities     capsSummary `json:"capabilities"`
	PrepareSeconds   float64     `json:"prepare_seconds"`
	Phases           []phaseJSON `json:"phases"`
	Error            string      `json:"error,omitempty"`
}

// capsSummary is what the server advertised in GetCapabilities.
type capsSummary struct {
	LowAPIVersion          string   `json:"low_api_version"`
	HighAPIVersion         string   `json:"high_api_version"`
	DigestFunctions        []string `json:"digest_functions"`
	MaxBatchTotalSizeBytes int64    `json:"max_batch_total_size_bytes"`
	MaxCASBlobSizeBytes    int64    `json:"max_cas_blob_size_bytes"`
	Compressors            []string `json:"compressors"`
	ActionCacheUpdates     bool     `json:"action_cache_update_enabled"`
	Execution              bool     `json:"execution_enabled"`
}

// phaseJSON is one phase in the JSON output.
type phaseJSON struct {
	Name              string  `json:"name"`
	Requests          int     `json:"requests"`
	Blobs             int     `json:"blobs"`
	Bytes             int64   `json:"bytes"`
	Seconds           float64 `json:"seconds"`
	RequestsPerSecond float64 `json:"requests_per_second"`
	BlobsPerSecond    float64 `json:"blobs_per_second"`
	MBPerSecond       float64 `json:"mb_per_second"`
	P50Millis         float64 `json:"p50_ms"`
	P99Millis         float64 `json:"p99_ms"`
	MaxMillis         float64 `json:"max_ms"`
	Skipped           string  `json:"skipped,omitempty"`
}

func newReport(cfg CASConfig, out io.Writer) *report {
	server := cfg.Server
	if cfg.Conn != nil && server == "" {
		server = "(connection given by caller)"
	}
	return &report{out: out, json: cfg.JSON, summary: casSummary{
		Server:           server,
		Instance:         cfg.Instance,
		RunID:            cfg.RunID,
		Seed:             cfg.Seed,
		Concurrency:      cfg.Concurrency,
		GOMAXPROCS:       runtime.GOMAXPROCS(0),
		SmallCount:       cfg.SmallCount,
		SmallMinBytes:    cfg.SmallMin,
		SmallMaxBytes:    cfg.SmallMax,
		LargeCount:       cfg.LargeCount,
		LargeBytes:       cfg.LargeSize,
		ActionCount:      cfg.ActionCount,
		FindMissingBatch: cfg.FindMissingBatch,
		ChunkBytes:       cfg.ChunkSize,
		VerifyReads:      cfg.VerifyReads,
		Phases:           []phaseJSON{},
	}}
}

func (rp *report) printf(format string, args ...any) {
	if !rp.json {
		fmt.Fprintf(rp.out, format, args...)
	}
}

// start prints the run's settings.
func (rp *report) start() {
	s := &rp.summary
	rp.printf("kiln bench cas: server %s, instance %q, run %s, seed %d, concurrency %d, GOMAXPROCS %d\n",
		s.Server, s.Instance, s.RunID, s.Seed, s.Concurrency, s.GOMAXPROCS)
}

// capabilities records and prints what the server advertised and the batch
// limit that follows from it.
func (rp *report) capabilities(caps *repb.ServerCapabilities, limit int64) {
	c := summarizeCapabilities(caps)
	rp.summary.Capabilities = c
	rp.summary.BatchLimitBytes = limit
	rp.printf("server capabilities: REAPI %s..%s, digest functions %s, max batch %s, max blob %s, compressors %s, action cache updates %s, execution %s\n",
		c.LowAPIVersion, c.HighAPIVersion, listOrNone(c.DigestFunctions), sizeOrNone(c.MaxBatchTotalSizeBytes),
		sizeOrNone(c.MaxCASBlobSizeBytes), listOrNone(c.Compressors), onOff(c.ActionCacheUpdates), onOff(c.Execution))
}

// summarizeCapabilities extracts what both load generators report of a
// server's capabilities.
func summarizeCapabilities(caps *repb.ServerCapabilities) capsSummary {
	cc := caps.GetCacheCapabilities()
	c := capsSummary{
		LowAPIVersion:          semver(caps.GetLowApiVersion()),
		HighAPIVersion:         semver(caps.GetHighApiVersion()),
		DigestFunctions:        []string{},
		MaxBatchTotalSizeBytes: cc.GetMaxBatchTotalSizeBytes(),
		MaxCASBlobSizeBytes:    cc.GetMaxCasBlobSizeBytes(),
		Compressors:            []string{},
		ActionCacheUpdates:     cc.GetActionCacheUpdateCapabilities().GetUpdateEnabled(),
		Execution:              caps.GetExecutionCapabilities().GetExecEnabled(),
	}
	for _, f := range cc.GetDigestFunctions() {
		c.DigestFunctions = append(c.DigestFunctions, f.String())
	}
	for _, z := range cc.GetSupportedCompressors() {
		c.Compressors = append(c.Compressors, z.String())
	}
	return c
}

// sizeOrNone formats a limit, where 0 or less means none.
func sizeOrNone(n int64) string {
	if n <= 0 {
		return "no limit"
	}
	return units.FormatSize(n)
}

// listOrNone joins l with commas, or says none.
func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ",")
}

// prepared prints the workload once it is generated.
func (rp *report) prepared(d time.Duration, smallTotal, total int64, dataBatches, findBatches int) {
	s := &rp.summary
	s.PrepareSeconds = d.Seconds()
	s.SmallTotalBytes = smallTotal
	rp.printf("workload: %d small blobs of %s..%s (%s), %d large blobs of %s, %d actions; batches up to %s (%d BatchUpdateBlobs/BatchReadBlobs and %d FindMissingBlobs requests), ByteStream chunks of %s\n",
		s.SmallCount, units.FormatSize(s.SmallMinBytes), units.FormatSize(s.SmallMaxBytes), units.FormatSize(smallTotal), s.LargeCount, units.FormatSize(s.LargeBytes),
		s.ActionCount, units.FormatSize(s.BatchLimitBytes), dataBatches, findBatches, units.FormatSize(int64(s.ChunkBytes)))
	if s.VerifyReads {
		rp.printf("verify reads: on (BatchReadBlobs data is compared with what was written; ByteStream.Read data is hashed with SHA-256 in this process, and that time counts in its results)\n")
	} else {
		rp.printf("verify reads: off (only lengths are checked)\n")
	}
	rp.printf("prepared %s in %s on %d cores (generating and hashing, untimed)\n",
		units.FormatSize(total), d.Round(time.Millisecond), s.GOMAXPROCS)
	rp.printf("MB = 10^6 bytes of blob content; p50 and p99 are the latency of one request (a batch is one request)\n\n")
}

// Column layout of the phase table.
const (
	headerFormat = "%-22s %8s %7s %9s %9s %9s %9s %8s %9s %9s\n"
	rowFormat    = "%-22s %8d %7s %9s %8.3fs %9.1f %9s %8s %9s %9s\n"
)

func (rp *report) tableHeader() {
	rp.printf(headerFormat, "phase", "requests", "blobs", "MB", "time", "req/s", "blobs/s", "MB/s", "p50", "p99")
}

// phase records and prints one phase.
func (rp *report) phase(res phaseResult) {
	p := phaseJSON{Name: res.Name, Skipped: res.Skipped}
	if res.Skipped != "" {
		rp.summary.Phases = append(rp.summary.Phases, p)
		rp.printf("%-22s skipped: %s\n", res.Name, res.Skipped)
		return
	}
	secs := res.Elapsed.Seconds()
	p.Requests, p.Blobs, p.Bytes, p.Seconds = res.Requests, res.Blobs, res.Bytes, secs
	if secs > 0 {
		p.RequestsPerSecond = float64(res.Requests) / secs
		p.BlobsPerSecond = float64(res.Blobs) / secs
		p.MBPerSecond = float64(res.Bytes) / 1e6 / secs
	}
	p.P50Millis, p.P99Millis, p.MaxMillis = millis(res.P50), millis(res.P99), millis(res.Max)
	rp.summary.Phases = append(rp.summary.Phases, p)

	blobs, blobsps, mb, mbps := "-", "-", "-", "-"
	if res.Blobs > 0 {
		blobs = fmt.Sprint(res.Blobs)
		blobsps = fmt.Sprintf("%.1f", p.BlobsPerSecond)
	}
	if res.Bytes > 0 {
		mb = fmt.Sprintf("%.1f", float64(res.Bytes)/1e6)
		mbps = fmt.Sprintf("%.1f", p.MBPerSecond)
	}
	rp.printf(rowFormat, res.Name, res.Requests, blobs, mb, secs, p.RequestsPerSecond, blobsps, mbps, latency(res.P50), latency(res.P99))
}

// finish prints the JSON summary, if asked for, and passes err through.
func (rp *report) finish(err error) error {
	if !rp.json {
		return err
	}
	if err != nil {
		rp.summary.Error = err.Error()
	}
	enc := json.NewEncoder(rp.out)
	enc.SetIndent("", "  ")
	if encErr := enc.Encode(rp.summary); encErr != nil && err == nil {
		return fmt.Errorf("write JSON summary: %w", encErr)
	}
	return err
}

func semver(v *smpb.SemVer) string {
	if v == nil {
		return "?"
	}
	s := fmt.Sprintf("%d.%d", v.GetMajor(), v.GetMinor())
	if v.GetPatch() != 0 {
		s += fmt.Sprintf(".%d", v.GetPatch())
	}
	return s
}

func onOff(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// latency prints a request latency with three significant digits or so.
func latency(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.2fms", millis(d))
	default:
		return fmt.Sprintf("%.3fs", d.Seconds())
	}
}
