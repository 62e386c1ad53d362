package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/kiln-build/kiln/internal/units"
)

// execReport prints an exec run's results: as human-readable lines while
// the run goes, or, with ExecConfig.JSON, as one JSON document
// (execSummary) at the end, including the error of a failed run.
type execReport struct {
	out     io.Writer
	json    bool
	summary execSummary
}

// execSummary is the JSON output of RunExec. Sizes are bytes, times
// seconds or milliseconds as the field names say. Upload and Results are
// absent if the run failed before them.
type execSummary struct {
	Server              string           `json:"server"`
	Instance            string           `json:"instance"`
	RunID               string           `json:"run_id"`
	Actions             int              `json:"actions"`
	Concurrency         int              `json:"concurrency"`
	SleepSeconds        float64          `json:"sleep_seconds"`
	TimeoutSeconds      float64          `json:"timeout_seconds"`
	Command             []string         `json:"command"`
	Platform            []string         `json:"platform"`
	GOMAXPROCS          int              `json:"gomaxprocs"`
	Capabilities        capsSummary      `json:"capabilities"`
	ExecDigestFunctions []string         `json:"exec_digest_functions"`
	PrepareSeconds      float64          `json:"prepare_seconds"`
	Upload              *execUploadJSON  `json:"upload,omitempty"`
	Results             *execResultsJSON `json:"results,omitempty"`
	Error               string           `json:"error,omitempty"`
}

// execUploadJSON is the untimed upload before the Execute calls.
type execUploadJSON struct {
	Blobs    int     `json:"blobs"`
	Present  int     `json:"present"`
	Uploaded int     `json:"uploaded"`
	Bytes    int64   `json:"bytes"`
	Requests int     `json:"requests"`
	Seconds  float64 `json:"seconds"`
}

// execResultsJSON is the timed part: the Execute calls.
type execResultsJSON struct {
	Completed        int     `json:"completed"`
	Seconds          float64 `json:"seconds"`
	ActionsPerSecond float64 `json:"actions_per_second"`
	CachedResults    int     `json:"cached_results"`
	// MeanCommandsRunning is the sum of the command run times over the
	// wall time: how many commands ran at once, on average.
	MeanCommandsRunning float64           `json:"mean_commands_running"`
	Latencies           []execLatencyJSON `json:"latencies"`
}

// execLatencyJSON is one latency of the results; see execStats for what
// each measures. Samples is how many results it was measured on.
type execLatencyJSON struct {
	Name      string  `json:"name"`
	Samples   int     `json:"samples"`
	P50Millis float64 `json:"p50_ms"`
	P99Millis float64 `json:"p99_ms"`
	MaxMillis float64 `json:"max_ms"`
}

func newExecReport(cfg ExecConfig, platform *repb.Platform, out io.Writer) *execReport {
	server := cfg.Server
	if cfg.Conn != nil && server == "" {
		server = "(connection given by caller)"
	}
	return &execReport{out: out, json: cfg.JSON, summary: execSummary{
		Server:              server,
		Instance:            cfg.Instance,
		RunID:               cfg.RunID,
		Actions:             cfg.Actions,
		Concurrency:         cfg.Concurrency,
		SleepSeconds:        cfg.Sleep.Seconds(),
		TimeoutSeconds:      (execTimeout + cfg.Sleep).Seconds(),
		Command:             execArguments(cfg.Sleep),
		Platform:            platformStrings(platform),
		GOMAXPROCS:          runtime.GOMAXPROCS(0),
		ExecDigestFunctions: []string{},
	}}
}

func (rp *execReport) printf(format string, args ...any) {
	if !rp.json {
		fmt.Fprintf(rp.out, format, args...)
	}
}

// start prints the run's settings.
func (rp *execReport) start() {
	s := &rp.summary
	rp.printf("kiln bench exec: server %s, instance %q, run %s, %d actions, concurrency %d, GOMAXPROCS %d\n",
		s.Server, s.Instance, s.RunID, s.Actions, s.Concurrency, s.GOMAXPROCS)
}

// capabilities records and prints what the server advertised.
func (rp *execReport) capabilities(caps *repb.ServerCapabilities) {
	ec := caps.GetExecutionCapabilities()
	c := summarizeCapabilities(caps)
	execFns := ec.GetDigestFunctions()
	if len(execFns) == 0 && ec.GetDigestFunction() != repb.DigestFunction_UNKNOWN {
		execFns = []repb.DigestFunction_Value{ec.GetDigestFunction()}
	}
	for _, f := range execFns {
		rp.summary.ExecDigestFunctions = append(rp.summary.ExecDigestFunctions, f.String())
	}
	rp.summary.Capabilities = c
	rp.printf("server capabilities: REAPI %s..%s, execution %s (digest functions %s), CAS digest functions %s, max batch %s, action cache updates %s\n",
		c.LowAPIVersion, c.HighAPIVersion, onOff(c.Execution), listOrNone(rp.summary.ExecDigestFunctions),
		listOrNone(c.DigestFunctions), sizeOrNone(c.MaxBatchTotalSizeBytes), onOff(c.ActionCacheUpdates))
}

// prepared prints the workload once it is built.
func (rp *execReport) prepared(w execWorkload, timeout time.Duration, d time.Duration) {
	s := &rp.summary
	s.PrepareSeconds = d.Seconds()
	var size int64
	for _, b := range w.blobs {
		size += int64(len(b.data))
	}
	platform := "none"
	if len(s.Platform) > 0 {
		platform = strings.Join(s.Platform, " ")
	}
	rp.printf("command: %s, environment PATH=%s, output %s; platform: %s; action timeout %s\n",
		shellJoin(s.Command), execPath, execOutputName, platform, timeout)
	rp.printf("prepared %d actions (%d blobs, %s) in %s (untimed)\n",
		len(w.actions), len(w.blobs), units.FormatSize(size), latency(d))
}

// uploaded prints the upload of the workload.
func (rp *execReport) uploaded(up execUpload) {
	rp.summary.Upload = &execUploadJSON{
		Blobs:    up.Blobs,
		Present:  up.Present,
		Uploaded: up.Uploaded,
		Bytes:    up.Bytes,
		Requests: up.Requests,
		Seconds:  up.Elapsed.Seconds(),
	}
	rp.printf("uploaded %d of %d blobs (%s), %d already present, with %d FindMissingBlobs and BatchUpdateBlobs requests in %s (untimed)\n\n",
		up.Uploaded, up.Blobs, units.FormatSize(up.Bytes), up.Present, up.Requests, latency(up.Elapsed))
}

// results records and prints the timed part of the run.
func (rp *execReport) results(st *execStats, elapsed time.Duration) {
	res := &execResultsJSON{
		Completed:     int(st.actions.Load()),
		Seconds:       elapsed.Seconds(),
		CachedResults: int(st.cached.Load()),
		Latencies:     []execLatencyJSON{},
	}
	if secs := elapsed.Seconds(); secs > 0 {
		res.ActionsPerSecond = float64(res.Completed) / secs
		res.MeanCommandsRunning = float64(st.commandNanos.Load()) / float64(elapsed)
	}
	rp.summary.Results = res
	cached := ""
	if res.CachedResults > 0 {
		cached = " (expected 0: the actions are new unless the run id was reused; their latencies count only in total)"
	}
	rp.printf("executed %d actions in %.3fs: %.1f actions/s, %d cached results%s, %.2f commands running on average\n",
		res.Completed, res.Seconds, res.ActionsPerSecond, res.CachedResults, cached, res.MeanCommandsRunning)
	rp.printf(execHeaderFormat, "latency", "samples", "p50", "p99", "max")
	for _, m := range st.metrics() {
		l := execLatencyJSON{Name: m.name, Samples: m.rec.Count()}
		p50, p99, mx := "-", "-", "-"
		if l.Samples > 0 {
			l.P50Millis, l.P99Millis, l.MaxMillis = millis(m.rec.Percentile(50)), millis(m.rec.Percentile(99)), millis(m.rec.Max())
			p50, p99, mx = signedLatency(m.rec.Percentile(50)), signedLatency(m.rec.Percentile(99)), signedLatency(m.rec.Max())
		}
		res.Latencies = append(res.Latencies, l)
		rp.printf(execRowFormat, l.Name, l.Samples, p50, p99, mx)
	}
	rp.printf("total: Execute call to final Operation, on this client's clock; overhead: total minus command.\n" +
		"From the result's metadata, on the server's and workers' clocks: command: execution_start..completed;\n" +
		"queued: queued..worker_start; worker: worker_start..completed; input fetch: input_fetch_start..completed;\n" +
		"upload: output_upload_start..completed. A metric counts only the results that carry its timestamps.\n")
}

// Column layout of the latency table.
const (
	execHeaderFormat = "%-12s %8s %10s %10s %10s\n"
	execRowFormat    = "%-12s %8d %10s %10s %10s\n"
)

// finish prints the JSON summary, if asked for, and passes err through.
func (rp *execReport) finish(err error) error {
	if !rp.json {
		return err
	}
	if err != nil {
		rp.summary.Error = err.Error()
	}
	enc := json.NewEncoder(rp.out)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // the command has a ">" in it
	if encErr := enc.Encode(rp.summary); encErr != nil && err == nil {
		return fmt.Errorf("write JSON summary: %w", encErr)
	}
	return err
}

// signedLatency is latency for intervals that clock skew can make negative.
func signedLatency(d time.Duration) string {
	if d < 0 {
		return "-" + latency(-d)
	}
	return latency(d)
}

// shellJoin renders a command line for people to read, quoting the
// arguments a POSIX shell would split or expand.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") == "" {
			out[i] = a
		} else {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(out, " ")
}
