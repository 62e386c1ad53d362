package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/kiln-build/kiln/cas/casclient"
	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/wrapper/cmdline"
	"github.com/kiln-build/kiln/wrapper/toolchain"
)

// Direct mode, as ccache calls it: a compile that ran once is remembered
// in a local manifest under a key of everything but the headers (the
// toolchain, the working directory, the arguments, the environment that
// steers the preprocessor, the source's contents), listing every file the
// preprocessor read with its contents' hash, and the action it made. The
// next identical compile whose files are unchanged looks that action up in
// the action cache without running the preprocessor, which is most of a
// cache hit's cost. Any doubt (no manifest, a changed file, a miss in the
// action cache, an unreadable file) takes the normal path, which records
// the compile again.
//
// Like ccache's direct mode, it does not notice a new header that would
// now be found earlier in the include path than the one recorded; sources
// using __DATE__, __TIME__ or __TIMESTAMP__ are never recorded.

// directVersion changes when the manifest's meaning does.
const directVersion = "kiln-direct-1"

// directEntries bounds the entries of one manifest (one per header
// variant seen, newest first).
const directEntries = 8

// directEnv are the variables that change what the preprocessor reads or
// says.
var directEnv = []string{"CPATH", "C_INCLUDE_PATH", "CPLUS_INCLUDE_PATH", "OBJC_INCLUDE_PATH", "GCC_EXEC_PREFIX", "COMPILER_PATH",
	"DEPENDENCIES_OUTPUT", "SUNPRO_DEPENDENCIES", "SOURCE_DATE_EPOCH", "LANG", "LC_ALL", "LC_MESSAGES", "LC_CTYPE"}

type directFile struct {
	Path  string `json:"path"`
	Size  int64  `json:"size"`
	Mtime int64  `json:"mtime_ns"`
	Ctime int64  `json:"ctime_ns"`
	Hash  string `json:"sha256"`
}

type directEntry struct {
	Files    []directFile `json:"files"`
	Action   string       `json:"action"`
	ActionSz int64        `json:"action_size"`
	DepFile  []byte       `json:"dep_file,omitempty"`
	PPStderr []byte       `json:"pp_stderr,omitempty"`
}

type directManifest struct {
	Entries []directEntry `json:"entries"`
}

// directKey is the manifest key of the compile, "" when direct mode does
// not apply (preprocessed input, an unreadable source).
func (w *Wrapper) directKey(tree *toolchain.Tree, inv *cmdline.Invocation, cwd string) string {
	if inv.Language.IsPreprocessed() {
		return ""
	}
	src, err := os.ReadFile(w.path(inv.Source))
	if err != nil || hasTimeMacro(src) {
		return ""
	}
	h := sha256.New()
	field := func(s string) { h.Write([]byte(s)); h.Write([]byte{0}) }
	field(directVersion)
	field(tree.Root.String())
	field(cwd)
	field(w.Config.BaseDir)
	field(w.Config.ExecuteTimeout.String())
	field(inv.Compiler)
	for _, a := range inv.Args {
		field(a)
	}
	field("")
	for _, k := range directEnv {
		field(k + "=" + w.Getenv(k))
	}
	sum := sha256.Sum256(src)
	h.Write(sum[:])
	return hex.EncodeToString(h.Sum(nil))
}

func (w *Wrapper) manifestPath(key string) string {
	return filepath.Join(w.CacheDir, "direct", key[:2], key[2:]+".json")
}

// directLookup returns the recorded entry whose files are all unchanged,
// or nil.
func (w *Wrapper) directLookup(key string) *directEntry {
	if key == "" {
		return nil
	}
	data, err := os.ReadFile(w.manifestPath(key))
	if err != nil {
		return nil
	}
	var m directManifest
	if json.Unmarshal(data, &m) != nil {
		return nil
	}
	hashes := map[string]string{} // files hashed during this lookup
	for i := range m.Entries {
		if w.unchanged(m.Entries[i].Files, hashes) {
			return &m.Entries[i]
		}
	}
	return nil
}

// unchanged reports whether every file still has its recorded contents:
// the same size and timestamps, or else the same hash.
func (w *Wrapper) unchanged(files []directFile, hashes map[string]string) bool {
	for _, f := range files {
		p := w.path(f.Path)
		var st syscall.Stat_t
		if syscall.Stat(p, &st) != nil || st.Size != f.Size {
			return false
		}
		if st.Mtim.Nano() == f.Mtime && st.Ctim.Nano() == f.Ctime {
			continue
		}
		h, ok := hashes[p]
		if !ok {
			df, _, err := w.Hashes.hashFile(p, w.Now())
			if err != nil {
				return false
			}
			h = df.Hash
			hashes[p] = h
		}
		if h != f.Hash {
			return false
		}
	}
	return true
}

// directHit serves the compile from the action cache by a manifest entry:
// ok false means the normal path must run (nothing was written).
func (w *Wrapper) directHit(ctx context.Context, ac repb.ActionCacheClient, cas *casclient.Client, e *directEntry, inv *cmdline.Invocation) (int, bool) {
	d, err := digest.New(cas.Function(), e.Action, e.ActionSz)
	if err != nil {
		return 0, false
	}
	act := &action{inv: inv, digest: d, outputs: remoteOutputs(inv), ppStderr: e.PPStderr}
	res, err := w.lookup(ctx, ac, cas, act)
	if err != nil || res.GetExitCode() != 0 {
		return 0, false
	}
	files, err := w.fetch(ctx, cas, act, res)
	if err != nil {
		return 0, false
	}
	if inv.DepFile != "" {
		if e.DepFile == nil || writeAtomic(w.path(inv.DepFile), e.DepFile, false, w.umask()) != nil {
			return 0, false
		}
	}
	code, err := w.finish(act, res, files)
	if err != nil {
		return 0, false
	}
	w.logf("action %s: direct hit", d)
	w.delta.CacheHits++
	w.delta.DirectHits++
	return code, true
}

// directRecord adds the finished compile act to the manifest of key. Any
// failure only loses the entry.
func (w *Wrapper) directRecord(key string, act *action) {
	if key == "" || act.includes == nil {
		return
	}
	e := directEntry{Action: act.digest.Hash(), ActionSz: act.digest.Size(), PPStderr: act.ppStderr, DepFile: act.depData}
	if act.inv.DepFile != "" && act.depData == nil {
		return
	}
	now := w.Now()
	for _, p := range act.includes {
		f, timeMacro, err := w.Hashes.hashFile(w.path(p), now)
		if err != nil || timeMacro {
			return
		}
		f.Path = p
		e.Files = append(e.Files, f)
	}
	path := w.manifestPath(key)
	var m directManifest
	if data, err := os.ReadFile(path); err == nil {
		json.Unmarshal(data, &m)
	}
	entries := []directEntry{e}
	for _, old := range m.Entries {
		if len(entries) < directEntries && old.Action != e.Action {
			entries = append(entries, old)
		}
	}
	data, err := json.Marshal(directManifest{Entries: entries})
	if err != nil {
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return
	}
	if err := writeAtomic(path, data, false, 0o022); err != nil {
		w.logf("direct mode: %v", err)
	}
}

// includedFiles returns the files a preprocessed file came from, from its
// line markers (# N "path" flags), each once, in order; nil if a marker
// cannot be read.
func includedFiles(pre []byte) []string {
	seen := map[string]bool{}
	out := []string{}
	for len(pre) > 0 {
		line := pre
		if i := bytes.IndexByte(pre, '\n'); i >= 0 {
			line, pre = pre[:i], pre[i+1:]
		} else {
			pre = nil
		}
		if len(line) < 4 || line[0] != '#' || line[1] != ' ' || line[2] < '0' || line[2] > '9' {
			continue
		}
		q := bytes.IndexByte(line, '"')
		if q < 0 {
			continue
		}
		name, err := strconv.Unquote(string(unquoteEnd(line[q:])))
		if err != nil {
			return nil
		}
		if name == "" || strings.HasPrefix(name, "<") || strings.HasSuffix(name, "//") || seen[name] {
			continue // <built-in>, <command-line>, the working-directory marker
		}
		seen[name] = true
		out = append(out, name)
	}
	return out
}

// unquoteEnd returns the quoted string at the start of s (up to the
// closing quote that is not escaped).
func unquoteEnd(s []byte) []byte {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return s[:i+1]
		}
	}
	return s
}
