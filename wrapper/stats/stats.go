// Package stats keeps the kiln cc wrapper's counters in the user's cache
// directory, shared by every wrapper process: make -j64 starts 64 of them
// at once, so each update takes an exclusive flock on a lock file, reads
// stats.json, adds its delta and replaces the file (temp + rename), all
// in well under a millisecond.
//
// The kiln command's C fast path (wrapper/fastpath) does not link this
// package: it appends one line per local compile to stats.journal under a
// shared flock, and every update here folds the journal in under an
// exclusive one.
//
// The same lock guards the warning marker (WarnOnce), which keeps a broken
// server from printing one warning per compile.
package stats

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Stats are the counters. Maps are keyed by worker name or reason.
type Stats struct {
	// Requests counts every kiln cc invocation.
	Requests int64 `json:"requests"`
	// CacheHits counts remote-eligible compiles answered by the action
	// cache; CacheMisses those that were not.
	CacheHits int64 `json:"cache_hits"`
	// DirectHits counts the cache hits found by direct mode, without
	// running the preprocessor (included in CacheHits).
	DirectHits  int64 `json:"direct_hits"`
	CacheMisses int64 `json:"cache_misses"`
	// RemoteCompiles counts executions, by the worker that ran them.
	RemoteCompiles map[string]int64 `json:"remote_compiles,omitempty"`
	// RemoteFailedCompiles counts remote compiles that exited non-zero
	// (a compile error: replayed as it is).
	RemoteFailedCompiles int64 `json:"remote_failed_compiles"`
	// LocalCompiles counts compiles run locally by decision, by the
	// cmdline reason (or a wrapper reason such as output_dir_missing).
	LocalCompiles map[string]int64 `json:"local_compiles,omitempty"`
	// Fallbacks counts remote attempts that failed and ran locally, by
	// reason (unavailable, timeout, corrupt_result, ...).
	Fallbacks map[string]int64 `json:"fallbacks,omitempty"`
	// Errors counts remote failures that were not allowed to fall back
	// (force_remote or fallback off).
	Errors int64 `json:"errors"`
	// CorruptResults counts downloaded outputs whose content did not
	// match their digest.
	CorruptResults int64 `json:"corrupt_results"`
	// CacheUploads counts results of local compiles stored in the action
	// cache (cache-only mode).
	CacheUploads int64 `json:"cache_uploads"`
	// BytesUp and BytesDown count CAS blob bytes sent and received.
	BytesUp   int64 `json:"bytes_up"`
	BytesDown int64 `json:"bytes_down"`
	// WrapperNanos is wall time spent in the wrapper, local compilers
	// that replace the process (exec) excluded.
	WrapperNanos int64 `json:"wrapper_nanos"`
}

// Add adds o's counters to s.
func (s *Stats) Add(o Stats) {
	s.Requests += o.Requests
	s.CacheHits += o.CacheHits
	s.DirectHits += o.DirectHits
	s.CacheMisses += o.CacheMisses
	s.RemoteFailedCompiles += o.RemoteFailedCompiles
	s.Errors += o.Errors
	s.CorruptResults += o.CorruptResults
	s.CacheUploads += o.CacheUploads
	s.BytesUp += o.BytesUp
	s.BytesDown += o.BytesDown
	s.WrapperNanos += o.WrapperNanos
	s.RemoteCompiles = addMap(s.RemoteCompiles, o.RemoteCompiles)
	s.LocalCompiles = addMap(s.LocalCompiles, o.LocalCompiles)
	s.Fallbacks = addMap(s.Fallbacks, o.Fallbacks)
}

func addMap(dst, src map[string]int64) map[string]int64 {
	if len(src) == 0 {
		return dst
	}
	if dst == nil {
		dst = make(map[string]int64, len(src))
	}
	for k, v := range src {
		dst[k] += v
	}
	return dst
}

// Inc increments m[k], allocating m if needed.
func Inc(m *map[string]int64, k string) {
	if *m == nil {
		*m = map[string]int64{}
	}
	(*m)[k]++
}

// Store is the counters' directory.
type Store struct {
	dir string
}

// Open returns the store in dir (created on first write).
func Open(dir string) *Store { return &Store{dir: dir} }

// Dir returns the store's directory.
func (st *Store) Dir() string { return st.dir }

func (st *Store) path() string { return filepath.Join(st.dir, "stats.json") }

// open opens (creating) the counters' file and takes its exclusive lock;
// closing the file releases it. One file, updated in place: creating a
// temporary file per update costs more than the rest of a local compile's
// bookkeeping on a busy filesystem.
func (st *Store) open() (*os.File, error) {
	f, err := os.OpenFile(st.path(), os.O_CREATE|os.O_RDWR, 0o644)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(st.dir, 0o755); err == nil {
			f, err = os.OpenFile(st.path(), os.O_CREATE|os.O_RDWR, 0o644)
		}
	}
	if err != nil {
		return nil, err
	}
	if err := flock(f, syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// flock takes lock (LOCK_EX, LOCK_SH) on f, waiting for it.
func flock(f *os.File, lock int) error {
	for {
		err := syscall.Flock(int(f.Fd()), lock)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// read decodes the first JSON value of f; absent, empty or corrupt counts
// as zero (a corrupt file must not break builds). Bytes after the value
// (left if a writer died between its write and its truncate) are ignored.
func read(f *os.File) Stats {
	var s Stats
	if _, err := f.Seek(0, io.SeekStart); err == nil {
		if err := json.NewDecoder(f).Decode(&s); err != nil {
			s = Stats{}
		}
	}
	return s
}

// write replaces f's contents with s.
func write(f *os.File, s Stats) error {
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		return err
	}
	return f.Truncate(int64(len(data)))
}

// JournalName is the file in the store's directory where the kiln
// command's C fast path appends "REASON NANOS\n" for each local compile it
// ran (a request, a local compile for REASON, NANOS in the wrapper).
const JournalName = "stats.journal"

// update adds delta and the journal's records to the stored counters and
// empties the journal, all under the counters' lock, and returns the
// result. The counters are written before the journal is emptied: a crash
// between the two counts some local compiles twice rather than never.
// A nil delta only folds the journal in.
func (st *Store) update(delta *Stats) (Stats, error) {
	f, err := st.open()
	if err != nil {
		return Stats{}, fmt.Errorf("stats %s: %w", st.dir, err)
	}
	defer f.Close()
	s := read(f)
	if delta != nil {
		s.Add(*delta)
	}
	j, err := os.OpenFile(filepath.Join(st.dir, JournalName), os.O_RDWR, 0)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Stats{}, fmt.Errorf("stats %s: %w", st.dir, err)
	}
	var journal []byte
	if j != nil {
		defer j.Close()
		if err := flock(j, syscall.LOCK_EX); err != nil {
			return Stats{}, fmt.Errorf("stats %s: %w", st.dir, err)
		}
		if journal, err = io.ReadAll(j); err != nil {
			return Stats{}, fmt.Errorf("stats %s: %w", st.dir, err)
		}
		s.Add(ParseJournal(journal))
	}
	if len(journal) > 0 || delta != nil {
		if err := write(f, s); err != nil {
			return Stats{}, fmt.Errorf("stats %s: %w", st.dir, err)
		}
	}
	if len(journal) > 0 {
		if err := j.Truncate(0); err != nil {
			return Stats{}, fmt.Errorf("stats %s: %w", st.dir, err)
		}
	}
	return s, nil
}

// ParseJournal returns the counters the journal's lines add up to. Lines
// that are not "REASON NANOS" (REASON lower-case letters and underscores,
// NANOS a decimal from 0 to an hour), and a last line without its newline, are
// ignored: a damaged journal must not break builds.
func ParseJournal(data []byte) Stats {
	var s Stats
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return s
		}
		line := data[:i]
		data = data[i+1:]
		reason, nanos, ok := bytes.Cut(line, []byte{' '})
		if !ok || len(reason) == 0 || len(reason) > 64 || len(bytes.Trim(reason, "abcdefghijklmnopqrstuvwxyz_")) > 0 {
			continue
		}
		n, err := strconv.ParseInt(string(nanos), 10, 64)
		if err != nil || n < 0 || n > int64(time.Hour) || nanos[0] < '0' || nanos[0] > '9' {
			continue
		}
		s.Requests++
		Inc(&s.LocalCompiles, string(reason))
		s.WrapperNanos += n
	}
}

// Record adds delta to the stored counters.
func (st *Store) Record(delta Stats) error {
	_, err := st.update(&delta)
	return err
}

// Read returns the stored counters.
func (st *Store) Read() (Stats, error) {
	return st.update(nil)
}

// Zero resets the counters and empties the journal.
func (st *Store) Zero() error {
	f, err := st.open()
	if err != nil {
		return fmt.Errorf("stats %s: %w", st.dir, err)
	}
	defer f.Close()
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("stats %s: %w", st.dir, err)
	}
	if err := os.Truncate(filepath.Join(st.dir, JournalName), 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("stats %s: %w", st.dir, err)
	}
	return nil
}

// WarnOnce reports whether this process should print a warning of kind
// now: true at most once per ttl across all processes sharing the store,
// marked by the modification time of a file in the store.
func (st *Store) WarnOnce(kind string, now time.Time, ttl time.Duration) bool {
	f, err := st.open()
	if err != nil {
		return true // better a repeated warning than a silent one
	}
	defer f.Close()
	marker := filepath.Join(st.dir, "warned-"+kind)
	if fi, err := os.Stat(marker); err == nil && now.Sub(fi.ModTime()) < ttl && now.Sub(fi.ModTime()) >= 0 {
		return false
	}
	if f, err := os.Create(marker); err == nil {
		f.Close()
	}
	_ = os.Chtimes(marker, now, now)
	return true
}

// Format returns the counters as text for `kiln stats`.
func (s Stats) Format() string {
	var b strings.Builder
	line := func(name string, v any) { fmt.Fprintf(&b, "%-28s %v\n", name, v) }
	line("requests", s.Requests)
	line("cache hits", s.CacheHits)
	line("cache misses", s.CacheMisses)
	line("  direct (no preprocessing)", s.DirectHits)
	if n := s.CacheHits + s.CacheMisses; n > 0 {
		line("cache hit rate", fmt.Sprintf("%.1f%%", 100*float64(s.CacheHits)/float64(n)))
	}
	section := func(title string, m map[string]int64) {
		var total int64
		for _, v := range m {
			total += v
		}
		line(title, total)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			line("  "+k, m[k])
		}
	}
	section("remote compiles", s.RemoteCompiles)
	line("remote compile errors", s.RemoteFailedCompiles)
	section("local compiles", s.LocalCompiles)
	section("fallbacks", s.Fallbacks)
	line("remote errors (no fallback)", s.Errors)
	line("corrupt results", s.CorruptResults)
	line("cache uploads", s.CacheUploads)
	line("bytes up", s.BytesUp)
	line("bytes down", s.BytesDown)
	line("time in wrapper", time.Duration(s.WrapperNanos).Round(time.Millisecond))
	return b.String()
}
