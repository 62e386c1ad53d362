package client

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"sync"
	"syscall"
	"time"
)

// FileHashes remembers the SHA-256 of the files direct mode hashed, keyed
// by path and valid while the file's device, inode, size and timestamps
// stay the same (the identity Bazel's digest cache trusts too). The kiln
// cc daemon keeps one for all the compiles it serves, so that a build
// hashes each header once, not once per compile that includes it. Files
// changed within the last two seconds are never remembered: they could
// change again within the same timestamp. The zero value is ready.
type FileHashes struct {
	mu sync.Mutex
	m  map[string]fileHash
}

// maxFileHashes bounds the cache; when full it starts over.
const maxFileHashes = 1 << 16

// fileHash is what is remembered of one file.
type fileHash struct {
	dev, ino           uint64
	size, mtime, ctime int64
	hash               string
	timeMacro          bool
}

func (c *FileHashes) get(p string, st *syscall.Stat_t) (fileHash, bool) {
	if c == nil {
		return fileHash{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.m[p]
	if !ok || h.dev != st.Dev || h.ino != st.Ino || h.size != st.Size || h.mtime != st.Mtim.Nano() || h.ctime != st.Ctim.Nano() {
		return fileHash{}, false
	}
	return h, true
}

func (c *FileHashes) put(p string, h fileHash) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxFileHashes {
		c.m = make(map[string]fileHash)
	}
	c.m[p] = h
}

// recentlyChanged reports whether st's timestamps are within two seconds
// of now (or in the future).
func recentlyChanged(st *syscall.Stat_t, now time.Time) bool {
	return now.Sub(time.Unix(0, st.Mtim.Nano())) < 2*time.Second || now.Sub(time.Unix(0, st.Ctim.Nano())) < 2*time.Second
}

// hashFile returns the file at p as a manifest records it (no timestamps
// when it changed recently, so that it is hashed each time) and whether
// it uses __DATE__, __TIME__ or __TIMESTAMP__. The stat is taken before
// the read: a change during the read shows as a mismatch later.
func (c *FileHashes) hashFile(p string, now time.Time) (directFile, bool, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		return directFile{}, false, err
	}
	recent := recentlyChanged(&st, now)
	h, ok := c.get(p, &st)
	if !ok || recent {
		data, err := os.ReadFile(p)
		if err != nil {
			return directFile{}, false, err
		}
		if int64(len(data)) != st.Size {
			return directFile{}, false, errors.New("file changed while read")
		}
		sum := sha256.Sum256(data)
		h = fileHash{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano(), hash: hex.EncodeToString(sum[:]), timeMacro: hasTimeMacro(data)}
		if !recent {
			c.put(p, h)
		}
	}
	f := directFile{Size: h.size, Mtime: h.mtime, Ctime: h.ctime, Hash: h.hash}
	if recent {
		f.Mtime, f.Ctime = -1, -1
	}
	return f, h.timeMacro, nil
}

// hasTimeMacro reports whether data uses a macro whose value changes with
// each compile.
func hasTimeMacro(data []byte) bool {
	return bytes.Contains(data, []byte("__DATE__")) || bytes.Contains(data, []byte("__TIME__")) || bytes.Contains(data, []byte("__TIMESTAMP__"))
}
