package stats_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
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
	journal := os.Getenv("KILN_STATS_JOURNAL") != ""
	st := stats.Open(dir)
	for range n {
		if journal {
			appendJournal(t, dir, "conftest 1000\n")
		}
		d := stats.Stats{Requests: 1}
		stats.Inc(&d.LocalCompiles, "link")
		if err := st.Record(d); err != nil {
			t.Fatal(err)
		}
	}
}

// appendJournal appends line as the C fast path does: O_APPEND, under a
// shared lock, in one write.
func appendJournal(t testing.TB, dir, line string) {
	f, err := os.OpenFile(filepath.Join(dir, stats.JournalName), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(line); err != nil {
		t.Fatal(err)
	}
}

func TestRecordAcrossProcesses(t *testing.T) {
	// Concurrent processes (make -j) lose no update.
	runHelpers(t, false)
}

func TestJournalAcrossProcesses(t *testing.T) {
	// Journal lines appended while other processes fold the journal in
	// are counted once each.
	runHelpers(t, true)
}

func runHelpers(t *testing.T, journal bool) {
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
			if journal {
				cmd.Env = append(cmd.Env, "KILN_STATS_JOURNAL=1")
			}
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
	want := int64(procs * each)
	if journal {
		if s.LocalCompiles["conftest"] != want || s.WrapperNanos < want*1000 {
			t.Fatalf("journal: got %+v, want %d conftests", s, want)
		}
		if fi, err := os.Stat(filepath.Join(dir, stats.JournalName)); err != nil || fi.Size() != 0 {
			t.Fatalf("journal not emptied: %v %v", fi, err)
		}
		want *= 2
	}
	if s.Requests != want || s.LocalCompiles["link"] != procs*each {
		t.Fatalf("got %+v, want %d requests", s, want)
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

func TestParseJournal(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		requests int64
		reasons  map[string]int64
		nanos    int64
	}{
		{"Empty", "", 0, nil, 0},
		{"Lines", "link 10\nconftest 20\nlink 5\n", 3, map[string]int64{"link": 2, "conftest": 1}, 35},
		{"Unterminated", "link 10\nlink 7", 1, map[string]int64{"link": 1}, 10},
		{"Garbage", "LINK 1\nlink\nlink -1\nlink +1\nlink 1x\n a 1\nlink 99999999999999999999\n\x00 1\nquery 4\n", 1, map[string]int64{"query": 1}, 4},
		{"LongReason", strings.Repeat("a", 65) + " 1\n", 0, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := stats.ParseJournal([]byte(tc.in))
			if s.Requests != tc.requests || s.WrapperNanos != tc.nanos || len(s.LocalCompiles) != len(tc.reasons) {
				t.Fatalf("got %+v", s)
			}
			for k, v := range tc.reasons {
				if s.LocalCompiles[k] != v {
					t.Fatalf("%s: got %d, want %d (%+v)", k, s.LocalCompiles[k], v, s)
				}
			}
		})
	}
}

func FuzzParseJournal(f *testing.F) {
	f.Add([]byte("link 10\nconftest 20\n"))
	f.Add([]byte("query 1\nx"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := stats.ParseJournal(data)
		var n int64
		for _, v := range s.LocalCompiles {
			n += v
		}
		if n != s.Requests || s.WrapperNanos < 0 || s.Requests > int64(strings.Count(string(data), "\n")) {
			t.Fatalf("inconsistent %+v", s)
		}
	})
}
