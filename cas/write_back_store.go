package cas

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"sync"

	"google.golang.org/grpc/codes"

	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/internal/rpcstatus"
)

// WriteBackStore accepts small blobs into memory and writes them to its
// base store in the background, so that an upload of many small blobs is
// not held back by the filesystem's rate of creating files (tens of
// thousands per second on ext4, far below what the network and the hash
// can do). It is meant for the disk store.
//
// Why losing a buffered blob is safe: a blob is only ever acknowledged
// after it was verified, and a process crash can lose at most the blobs
// still buffered. Those then read as missing, which every REAPI client
// handles (Bazel uploads inputs again on FAILED_PRECONDITION, and the action
// cache never returns a result whose outputs are missing). Without fsync,
// the disk store already gives the same guarantee for a power loss.
//
// Bounds: only blobs of at most MaxBlob bytes are buffered, and at most
// Budget bytes in all; beyond that Put writes through, at the filesystem's
// pace. If a background write fails for lack of space, Put writes through
// until a write succeeds again, so clients see RESOURCE_EXHAUSTED as they
// would without the buffer.
type WriteBackStore struct {
	base    BlobStore
	log     *slog.Logger
	maxBlob int64
	budget  int64

	mu       sync.Mutex
	pending  map[digest.Digest][]byte // guarded by mu
	buffered int64                    // bytes in pending; guarded by mu
	through  bool                     // write through after a failure; guarded by mu
	closed   bool                     // guarded by mu

	queue chan digest.Digest // blobs in pending, in arrival order
	wg    sync.WaitGroup     // the writers
}

// NewWriteBackStore starts writers background goroutines writing to base;
// Close stops them after writing everything buffered.
func NewWriteBackStore(base BlobStore, maxBlob, budget int64, writers int, log *slog.Logger) *WriteBackStore {
	ws := &WriteBackStore{
		base: base, log: log, maxBlob: maxBlob, budget: budget,
		pending: map[digest.Digest][]byte{},
		queue:   make(chan digest.Digest, 1<<16),
	}
	for i := 0; i < writers; i++ {
		ws.wg.Add(1)
		go func() {
			defer ws.wg.Done()
			ws.write()
		}()
	}
	return ws
}

// Put buffers a small blob once all of r has been read without error, or
// writes through to base.
func (ws *WriteBackStore) Put(ctx context.Context, d digest.Digest, r io.Reader) error {
	if d.Size() > ws.maxBlob {
		return ws.base.Put(ctx, d, r)
	}
	ws.mu.Lock()
	_, dup := ws.pending[d]
	direct := ws.through || ws.closed || ws.buffered+d.Size() > ws.budget
	ws.mu.Unlock()
	if direct && !dup {
		err := ws.base.Put(ctx, d, r)
		if err == nil {
			ws.mu.Lock()
			ws.through = false
			ws.mu.Unlock()
		}
		return err
	}
	// Read one byte more than the digest's size, so that an over-long
	// stream fails in the verifying reader upstream rather than here.
	data := make([]byte, 0, d.Size()+1)
	data, err := readAllInto(r, data)
	if err != nil {
		return err
	}
	if dup {
		return nil
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if _, ok := ws.pending[d]; ok {
		return nil
	}
	if ws.closed {
		return ws.base.Put(ctx, d, bytes.NewReader(data))
	}
	select {
	case ws.queue <- d:
	default:
		// The queue is full: write through, outside the lock.
		ws.mu.Unlock()
		err := ws.base.Put(ctx, d, bytes.NewReader(data))
		ws.mu.Lock()
		return err
	}
	ws.pending[d] = data
	ws.buffered += int64(len(data))
	return nil
}

// readAllInto reads r to its end into buf.
func readAllInto(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// write moves buffered blobs to base until Close.
func (ws *WriteBackStore) write() {
	for d := range ws.queue {
		ws.mu.Lock()
		data := ws.pending[d]
		ws.mu.Unlock()
		// The blob is written with a background context: its uploader is
		// long gone, and Close waits for this write.
		err := ws.base.Put(context.Background(), d, bytes.NewReader(data))
		ws.mu.Lock()
		delete(ws.pending, d)
		ws.buffered -= int64(len(data))
		if err != nil && rpcstatus.Code(err) == codes.ResourceExhausted {
			ws.through = true
		}
		ws.mu.Unlock()
		if err != nil {
			ws.log.Warn("write-back store: a buffered blob could not be stored and is lost", "digest", d.String(), "err", err)
		}
	}
}

// Get serves buffered blobs from memory and the rest from base.
func (ws *WriteBackStore) Get(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	ws.mu.Lock()
	data, ok := ws.pending[d]
	ws.mu.Unlock()
	if ok {
		return io.NopCloser(bytes.NewReader(data)), nil
	}
	return ws.base.Get(ctx, d)
}

// FindMissing asks base about the blobs that are not buffered.
func (ws *WriteBackStore) FindMissing(ctx context.Context, ds []digest.Digest) ([]digest.Digest, error) {
	rest := ds[:0:0]
	ws.mu.Lock()
	for _, d := range ds {
		if _, ok := ws.pending[d]; !ok {
			rest = append(rest, d)
		}
	}
	ws.mu.Unlock()
	if len(rest) == 0 {
		return nil, nil
	}
	return ws.base.FindMissing(ctx, rest)
}

// Close writes every buffered blob to base and stops the writers. Puts
// after Close write through.
func (ws *WriteBackStore) Close() {
	ws.mu.Lock()
	if ws.closed {
		ws.mu.Unlock()
		return
	}
	ws.closed = true
	ws.mu.Unlock()
	close(ws.queue)
	ws.wg.Wait()
}
