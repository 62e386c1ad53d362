package stats_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/wrapper/stats"
)

// TestHelperProcess records one request per call when run as a child by
// TestRecordAcrossProcesses.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv("KILN_STATS_HELPER")
	if dir == "" {
		t.Skip("helper")
	}
	n, _ := strconv.Atoi(os.Getenv("KILN_STATS_N"))
	st := stats.Open(dir)
	for range n {
		d := stats.Stats{Requests: 1}
		stats.Inc(&d.LocalCompiles, "link")
		if err := st.Record(d); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRecordAcrossProcesses(t *testing.T) {
	// Concurrent processes (make -j) lose no update.
	dir := t.TempDir()
	const procs, each = 8, 25
	var wg sync.WaitGroup
	errs := make([]error, procs)
	for i := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
			cmd.Env = append(os.Environ(), "KILN_STATS_HELPER="+dir, "KILN_STATS_N="+strconv.Itoa(each))
			out, err := cmd.CombinedOutput()
			if err != nil {
				errs[i] = err
				t.Logf("%s", out)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	s, err := stats.Open(dir).Read()
	if err != nil {
		t.Fatal(err)
	}
	if s.Requests != procs*each || s.LocalCompiles["link"] != procs*each {
		t.Fatalf("got %+v, want %d", s, procs*each)
	}
	if err := stats.Open(dir).Zero(); err != nil {
		t.Fatal(err)
	}
	if s, _ := stats.Open(dir).Read(); s.Requests != 0 {
		t.Fatalf("after Zero: %+v", s)
	}
}

func TestWarnOnce(t *testing.T) {
	// One warning per TTL, whoever asks.
	st := stats.Open(t.TempDir())
	now := time.Now()
	if !st.WarnOnce("fallback", now, 10*time.Minute) {
		t.Fatal("first warning suppressed")
	}
	if st.WarnOnce("fallback", now.Add(time.Minute), 10*time.Minute) {
		t.Fatal("second warning within the TTL printed")
	}
	if !st.WarnOnce("fallback", now.Add(11*time.Minute), 10*time.Minute) {
		t.Fatal("warning after the TTL suppressed")
	}
}

func TestDamagedFile(t *testing.T) {
	for _, tc := range []struct {
		name, contents string
		want           int64 // requests after one Record of 1
	}{
		{"Empty", "", 1},
		{"Garbage", "not json", 1},
		{"TrailingBytesOfALongerOldValue", `{"Requests":5}"Requests":77}`, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "stats.json"), []byte(tc.contents), 0o644); err != nil {
				t.Fatal(err)
			}
			st := stats.Open(dir)
			if err := st.Record(stats.Stats{Requests: 1}); err != nil {
				t.Fatal(err)
			}
			s, err := st.Read()
			if err != nil || s.Requests != tc.want {
				t.Fatalf("requests %d, %v; want %d", s.Requests, err, tc.want)
			}
			if err := st.Zero(); err != nil {
				t.Fatal(err)
			}
			if s, _ := st.Read(); s.Requests != 0 {
				t.Fatalf("after Zero: %d requests", s.Requests)
			}
		})
	}
}
