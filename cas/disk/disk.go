// Package disk is a BlobStore on a local filesystem: one file per blob,
// bounded in total size, evicting the least recently used blob first. It
// backs both the CAS and the action cache.
//
// # Layout
//
//	DIR/
//	  LOCK                          flock'ed while a Store uses DIR
//	  lru-snapshot                  recency order, written by Close, read and deleted by New
//	  sha256/                       one directory per digest function (its resource-name name)
//	    00/ … ff/                   256 shards: the first two hex digits of the hash (made by the first Put)
//	      {hex}-{size}              a blob whose content is {size} bytes long
//	      {hex}-{size}-{len}        an action-cache entry: key size {size}, content {len} bytes
//	      tmp-{n}                   an upload in progress; removed by New
//	  blake3/
//	    …
//
// Everything the index needs is in the names, so New rebuilds the index from
// directory listings alone, without a stat per file.
//
// # File format
//
// Each file is the content followed by an 8-byte trailer:
//
//	+------------------------+-----------+--------------------+
//	| content ({len} bytes)  | "kln\x01" | CRC-32C (LE, 4 B)  |
//	+------------------------+-----------+--------------------+
//
// CRC-32C (Castagnoli) runs at several GB/s with the CPU's CRC instructions,
// so every read checks the whole file, where re-hashing SHA-256 would cost
// ~250 MiB/s on some CPUs. The digest itself is verified once, on upload, by
// cas.NewVerifyingStore. A file whose length, magic or CRC is wrong is
// removed: blobs of at most 1 MiB are read whole and checked before Get
// returns (a corrupt one is NotFound and never served); larger ones stream
// and their reader returns DataLoss at the end instead of io.EOF.
//
// # Crash safety
//
// A Put writes a temporary file and renames it into place only after the
// whole content arrived, so a name never refers to a partial upload while the
// machine is up. There is no fsync per blob: after a power loss a file may
// be empty or garbage under its final name; the CRC catches that on the
// first read and the blob turns into a miss. FindMissing may report such a
// blob present until then, as it may for any blob evicted between
// FindMissing and its use.
//
// # Space accounting
//
// Each blob counts as its file length rounded up to 4 KiB, what ext4 and xfs
// allocate, so maxBytes bounds the real disk use (directories and inodes
// aside). An upload reserves its digest's size before writing; if the
// content turns out longer (action-cache entries) it reserves more as it
// goes. If the filesystem fills up anyway, Put returns ResourceExhausted and
// the store keeps serving reads.
//
// # Locking
//
// One mutex, Store.mu, guards the index. Files are read and written outside
// it. Renaming a finished upload into place and inserting it into the index
// happen together under mu, so the index and the directory agree whenever mu
// is free, except for evicted files, which are unlinked outside mu (an
// eviction may unlink thousands of files) and listed in Store.unlinking
// meanwhile. A Put of a digest that is being unlinked waits for the unlink
// before its rename, so an unlink never deletes a newer copy. A reader that
// finds its file corrupt removes it under mu, and only if the path still
// names the inode it read, so a good copy uploaded meanwhile stays.
//
// # Choices
//
// Temporary file plus rename, not O_TMPFILE plus linkat: on ext4 here
// linkat saved about 15% of a small Put, but it cannot replace an existing
// name (action-cache updates), needs CAP_DAC_READ_SEARCH or a /proc link
// (EXDEV in some containers), and not every filesystem has O_TMPFILE: not
// worth two code paths.
//
// The index costs about 200 bytes of memory per blob (a million blobs,
// 200 MB), and New takes about a second per million blobs on a small VM,
// mostly listing directories and filling the index.
package disk

import (
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/kiln-build/kiln/cas"
	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/cas/lru"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// smallBlobMax is the largest content that Get reads and checks whole before
// returning. Larger blobs stream.
const smallBlobMax = 1 << 20

// Store is a BlobStore in a directory. Create it with New and Close it when
// done; it must be the only user of its directory (New locks it).
type Store struct {
	dir     string
	log     *slog.Logger
	fns     []digest.Function                    // the supported functions
	fnDirs  map[repb.DigestFunction_Value]string // "DIR/sha256/"
	lockFD  int
	tmpSeq  atomic.Uint64 // names temporary files
	bufPool sync.Pool     // *[]byte of putChunk+trailerLen bytes

	mu sync.Mutex
	// index maps each stored digest to its content length. Guarded by mu.
	index *lru.Index[digest.Digest, int64]
	// unlinking holds evicted digests whose files are being unlinked
	// outside mu. Guarded by mu; unlinked is signalled when it shrinks.
	unlinking map[digest.Digest]struct{}
	unlinked  sync.Cond
	// closed is set by Close; later operations fail. Guarded by mu.
	closed bool
}

var _ cas.BlobStore = (*Store)(nil)

// Option configures New.
type Option func(*Store)

// WithLogger sets where the store logs what it repairs: leftover temporary
// files, corrupt blobs, unparseable names. The default is slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(s *Store) { s.log = l }
}

// appendShardDir appends "DIR/{function}/{xx}/" for d.
func (s *Store) appendShardDir(b []byte, d digest.Digest) []byte {
	b = append(b, s.fnDirs[d.Function().Enum()]...)
	return append(appendHex(b, d.RawHash()[:1]), '/')
}

// path returns the path of the file holding d with contentLen bytes.
func (s *Store) path(d digest.Digest, contentLen int64) string {
	var buf [256]byte
	return string(appendFileName(s.appendShardDir(buf[:0], d), d, contentLen))
}

// functions returns the supported digest functions.
func functions() []digest.Function {
	var fns []digest.Function
	for _, e := range digest.SupportedFunctions() {
		f, err := digest.FunctionFromEnum(e)
		if err == nil {
			fns = append(fns, f)
		}
	}
	return fns
}

func newStore(dir string, opts []Option) *Store {
	s := &Store{
		dir:       dir,
		log:       slog.Default(),
		fnDirs:    make(map[repb.DigestFunction_Value]string),
		lockFD:    -1,
		unlinking: make(map[digest.Digest]struct{}),
	}
	s.unlinked.L = &s.mu
	s.fns = functions()
	for _, f := range s.fns {
		s.fnDirs[f.Enum()] = filepath.Join(dir, f.Name()) + "/"
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// closedError is returned by operations after Close.
func (s *Store) closedError() error {
	return status.Errorf(codes.Unavailable, "disk store %s is closed", s.dir)
}
