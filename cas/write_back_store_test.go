package cas_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/cas"
	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/cas/memory"
	"github.com/kiln-build/kiln/cas/storetest"
)

// gatedStore holds every Put until gate is closed, and can be told to fail.
type gatedStore struct {
	cas.BlobStore
	gate chan struct{}
	fail atomic.Bool
	puts atomic.Int64
}

func (g *gatedStore) Put(ctx context.Context, d digest.Digest, r io.Reader) error {
	g.puts.Add(1)
	<-g.gate
	if g.fail.Load() {
		io.Copy(io.Discard, r)
		return status.Error(codes.ResourceExhausted, "disk full")
	}
	return g.BlobStore.Put(ctx, d, r)
}

func newWriteBack(t *testing.T, budget int64) (*cas.WriteBackStore, *gatedStore) {
	base := &gatedStore{BlobStore: memory.New(1 << 30), gate: make(chan struct{})}
	ws := cas.NewWriteBackStore(base, 64<<10, budget, 2, slog.New(slog.DiscardHandler))
	t.Cleanup(func() {
		select {
		case <-base.gate:
		default:
			close(base.gate)
		}
		ws.Close()
	})
	return ws, base
}

func TestWriteBackStore(t *testing.T) {
	ctx := context.Background()
	t.Run("BufferedBlobIsVisibleAtOnceAndWrittenLater", func(t *testing.T) {
		ws, base := newWriteBack(t, 1<<20)
		d, data := storetest.Blob(1, 1000)
		storetest.PutBytes(t, ws, d, data) // returns although base is held
		storetest.RequireContent(t, ws, d, data)
		storetest.RequireMissing(t, ws, []digest.Digest{d}, nil)
		storetest.RequireMissing(t, base.BlobStore, []digest.Digest{d}, []digest.Digest{d})
		close(base.gate)
		ws.Close()
		storetest.RequireContent(t, base.BlobStore, d, data)
	})
	t.Run("FailingReaderBuffersNothing", func(t *testing.T) {
		ws, base := newWriteBack(t, 1<<20)
		d, data := storetest.Blob(2, 1000)
		boom := errors.New("boom")
		if err := ws.Put(ctx, d, storetest.ErrReaderAfter(data, 500, boom)); !errors.Is(err, boom) {
			t.Fatalf("Put = %v, want the reader's error", err)
		}
		storetest.RequireMissing(t, ws, []digest.Digest{d}, []digest.Digest{d})
		close(base.gate)
		ws.Close()
		if base.puts.Load() != 0 {
			t.Fatal("a failed upload reached the base store")
		}
	})
	t.Run("LargeBlobsAndFullBufferWriteThrough", func(t *testing.T) {
		ws, base := newWriteBack(t, 1500)
		close(base.gate)
		big, bigData := storetest.Blob(3, 100<<10)
		storetest.PutBytes(t, ws, big, bigData)
		storetest.RequireContent(t, base.BlobStore, big, bigData) // no Close needed
		a, aData := storetest.Blob(4, 1000)
		b, bData := storetest.Blob(5, 1000)
		storetest.PutBytes(t, ws, a, aData)
		storetest.PutBytes(t, ws, b, bData) // over the 1500-byte budget unless a was written already
		storetest.RequireContent(t, ws, a, aData)
		storetest.RequireContent(t, ws, b, bData)
	})
	t.Run("FailedBackgroundWriteSwitchesToWriteThrough", func(t *testing.T) {
		ws, base := newWriteBack(t, 1<<20)
		base.fail.Store(true)
		d, data := storetest.Blob(6, 1000)
		storetest.PutBytes(t, ws, d, data)
		close(base.gate)
		// Wait until the background write has failed and dropped the blob.
		for i := 0; ; i++ {
			if _, err := ws.Get(ctx, d); status.Code(err) == codes.NotFound {
				break
			}
			if i > 1000 {
				t.Fatal("buffered blob never written")
			}
			waitABit()
		}
		e, eData := storetest.Blob(7, 1000)
		if err := ws.Put(ctx, e, bytes.NewReader(eData)); status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("Put after a failed write = %v, want ResourceExhausted", err)
		}
		base.fail.Store(false)
		storetest.PutBytes(t, ws, e, eData) // written through, succeeds, buffering resumes
		storetest.RequireContent(t, base.BlobStore, e, eData)
	})
	t.Run("ConcurrentPutsOfOneBlob", func(t *testing.T) {
		ws, base := newWriteBack(t, 1<<20)
		close(base.gate)
		d, data := storetest.Blob(8, 4000)
		var wg sync.WaitGroup
		for i := 0; i < 16; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := ws.Put(ctx, d, bytes.NewReader(data)); err != nil {
					t.Error(err)
				}
				storetest.RequireContent(t, ws, d, data)
			}()
		}
		wg.Wait()
		ws.Close()
		storetest.RequireContent(t, base.BlobStore, d, data)
	})
}

func waitABit() { time.Sleep(time.Millisecond) }
