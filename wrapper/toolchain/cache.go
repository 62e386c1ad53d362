package toolchain

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/internal/rpcstatus"
)

// manifestVersion changes whenever the manifest format or what Capture
// puts in a tree changes, so that old cache files are ignored.
const manifestVersion = 2

// manifest is the cached form of a tree: enough to rebuild every Directory
// without reading a file, plus what is needed to notice that the host
// changed (size and modification time of each file, target of each link).
type manifest struct {
	Version     int            `json:"version"`
	Key         string         `json:"key"`
	Function    string         `json:"digest_function"`
	Compiler    string         `json:"compiler"`
	PathEnv     string         `json:"path_env"`
	LibraryPath []string       `json:"library_path"`
	Dirs        []string       `json:"dirs"`
	Files       []manifestFile `json:"files"`
	Symlinks    []manifestLink `json:"symlinks"`
	CopiedLinks []manifestLink `json:"copied_links"` // Tree.CopiedLinks; Target unused
}

type manifestFile struct {
	Path       string `json:"path"`
	Host       string `json:"host"`
	Hash       string `json:"hash"`
	Size       int64  `json:"size"`
	Executable bool   `json:"executable"`
	MtimeNs    int64  `json:"mtime_ns"`
}

type manifestLink struct {
	Path   string `json:"path"`
	Target string `json:"target"`
	// Host is the link's host path and HostTarget what it pointed to at
	// capture time.
	Host       string `json:"host"`
	HostTarget string `json:"host_target"`
}

// LoadOrCapture returns the tree of the compiler at compilerPath, from the
// cache in cacheDir when the compiler binary (path, size, modification
// time) and every file and symlink of the cached tree are unchanged (a
// stat per file, no hashing), else by capturing it and caching the result.
// Concurrent callers (make -j64 starting many kiln cc at once) serialize
// on a lock file, so one captures and the others read its result.
// A cache file that cannot be read or parsed is replaced; failing to write
// one is not an error (the tree is still returned).
func LoadOrCapture(ctx context.Context, cacheDir, compilerPath string) (*Tree, error) {
	return NewCapturer().LoadOrCapture(ctx, cacheDir, compilerPath)
}

// LoadOrCapture is the package's LoadOrCapture with c's dependencies.
func (c *Capturer) LoadOrCapture(ctx context.Context, cacheDir, compilerPath string) (*Tree, error) {
	compiler, err := c.absCompiler(compilerPath)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(filepath.Join(c.HostRoot, compiler))
	if err != nil {
		return nil, fileError(err, "compiler %s", compiler)
	}
	key := fmt.Sprintf("%s\x00%s\x00%d\x00%d", c.Fn.Name(), compiler, fi.Size(), fi.ModTime().UnixNano())
	sum := sha256.Sum256([]byte(key))
	name := filepath.Join(cacheDir, "toolchain-"+hex.EncodeToString(sum[:12]))
	if t := c.load(name+".json", key); t != nil {
		return t, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, status.Errorf(codes.Internal, "toolchain cache %s: %v", cacheDir, err)
	}
	unlock, err := Lock(ctx, name+".lock")
	if err != nil {
		return nil, err
	}
	defer unlock()
	if t := c.load(name+".json", key); t != nil {
		return t, nil // another process captured it while we waited
	}
	t, err := c.Capture(ctx, compiler)
	if err != nil {
		return nil, err
	}
	_ = c.store(name+".json", key, t) // a cache that cannot be written only costs time
	return t, nil
}

// load returns the cached tree in file name if it is for key and the host
// still matches it, else nil.
func (c *Capturer) load(name, key string) *Tree {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil
	}
	var m manifest
	if err := json.Unmarshal(data, &m); err != nil || m.Version != manifestVersion || m.Key != key || m.Function != c.Fn.Name() {
		return nil
	}
	b := newBuilder(c.Fn)
	for _, f := range m.Files {
		fi, err := os.Stat(f.Host)
		if err != nil || fi.Size() != f.Size || fi.ModTime().UnixNano() != f.MtimeNs {
			return nil
		}
		d, err := digest.New(c.Fn, f.Hash, f.Size)
		if err != nil {
			return nil
		}
		if b.addFile(File{Path: f.Path, HostPath: f.Host, Digest: d, Executable: f.Executable}) != nil {
			return nil
		}
	}
	for _, l := range append(m.Symlinks, m.CopiedLinks...) {
		if target, err := os.Readlink(l.Host); err != nil || target != l.HostTarget {
			return nil
		}
	}
	for _, l := range m.Symlinks {
		if b.addSymlink(l.Path, l.Target) != nil {
			return nil
		}
	}
	for _, d := range m.Dirs {
		if b.addDir(d) != nil {
			return nil
		}
	}
	t, err := b.build()
	if err != nil {
		return nil
	}
	t.Compiler, t.PathEnv, t.LibraryPath, t.FromCache = m.Compiler, m.PathEnv, m.LibraryPath, true
	for _, l := range m.CopiedLinks {
		t.CopiedLinks = append(t.CopiedLinks, Symlink{Path: l.Path, Target: l.HostTarget})
	}
	return t
}

// store writes t's manifest to name atomically (temporary file, rename).
func (c *Capturer) store(name, key string, t *Tree) error {
	m := manifest{Version: manifestVersion, Key: key, Function: c.Fn.Name(), Compiler: t.Compiler, PathEnv: t.PathEnv, LibraryPath: t.LibraryPath}
	for _, f := range t.Files {
		fi, err := os.Stat(f.HostPath)
		if err != nil {
			return err
		}
		if fi.Size() != f.Digest.Size() {
			return errors.New(f.HostPath + " changed since it was hashed")
		}
		m.Files = append(m.Files, manifestFile{Path: f.Path, Host: f.HostPath, Hash: f.Digest.Hash(), Size: f.Digest.Size(), Executable: f.Executable, MtimeNs: fi.ModTime().UnixNano()})
	}
	for _, l := range t.Symlinks {
		host := filepath.Join(c.HostRoot, l.Path)
		target, err := os.Readlink(host)
		if err != nil {
			return err
		}
		m.Symlinks = append(m.Symlinks, manifestLink{Path: l.Path, Target: l.Target, Host: host, HostTarget: target})
	}
	for _, l := range t.CopiedLinks {
		host := filepath.Join(c.HostRoot, l.Path)
		if target, err := os.Readlink(host); err != nil || target != l.Target {
			return errors.New(host + " changed since it was followed")
		}
		m.CopiedLinks = append(m.CopiedLinks, manifestLink{Path: l.Path, Host: host, HostTarget: l.Target})
	}
	for _, d := range t.Directories {
		m.Dirs = append(m.Dirs, d.Path)
	}
	data, err := json.MarshalIndent(m, "", "\t")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(name), ".toolchain-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), name)
}

// Lock takes an exclusive flock on name (created if needed), polling so
// that ctx can cancel the wait, and returns the function that releases it.
// It serializes the user's wrapper processes around one toolchain.
func Lock(ctx context.Context, name string) (func(), error) {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "toolchain cache lock: %v", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, status.Errorf(codes.Internal, "toolchain cache lock %s: %v", name, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, rpcstatus.FromContext(ctx)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
