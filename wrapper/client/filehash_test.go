package client

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestFileHashes(t *testing.T) {
	p := filepath.Join(t.TempDir(), "h.h")
	if err := os.WriteFile(p, []byte("int a;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var c FileHashes
	later := time.Now().Add(time.Minute) // the file is old by then

	f, macro, err := c.hashFile(p, later)
	if err != nil || macro || f.Hash != sha("int a;\n") || f.Mtime < 0 {
		t.Fatalf("first hash: %+v %v %v", f, macro, err)
	}
	// An unchanged file is served from the cache: a planted hash shows it.
	h := c.m[p]
	h.hash = "planted"
	c.m[p] = h
	if f, _, _ := c.hashFile(p, later); f.Hash != "planted" {
		t.Fatalf("unchanged file hashed again: %+v", f)
	}
	// Same size, mtime put back: the ctime still differs, so it is hashed.
	fi, _ := os.Stat(p)
	if err := os.WriteFile(p, []byte("int b;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if f, _, _ := c.hashFile(p, later.Add(time.Minute)); f.Hash != sha("int b;\n") {
		t.Fatalf("changed file served from the cache: %+v", f)
	}
	// A file changed just now is neither cached nor recorded with times.
	if err := os.WriteFile(p, []byte("__TIME__\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, macro, err = c.hashFile(p, time.Now())
	if err != nil || !macro || f.Mtime != -1 || f.Ctime != -1 || f.Hash != sha("__TIME__\n") {
		t.Fatalf("recent file: %+v %v %v", f, macro, err)
	}
	if h, ok := c.m[p]; ok && h.hash == sha("__TIME__\n") {
		t.Fatal("a recently changed file was cached")
	}
	// A nil cache hashes every time.
	var none *FileHashes
	if f, _, err := none.hashFile(p, later); err != nil || f.Hash != sha("__TIME__\n") {
		t.Fatalf("nil cache: %+v %v", f, err)
	}
	if _, _, err := c.hashFile(filepath.Join(t.TempDir(), "missing.h"), later); err == nil {
		t.Fatal("missing file hashed")
	}
}
