package cas

import (
	"bytes"
	"context"
	"io"

	"github.com/kiln-build/kiln/cas/digest"
)

// emptyBlobStore answers for the empty blob itself: it is always present,
// reads as zero bytes and is never written to the backend, as REAPI
// requires ("the empty blob is always available").
type emptyBlobStore struct {
	BlobStore
}

// NewEmptyBlobStore returns base with the empty blob of every digest
// function always present.
func NewEmptyBlobStore(base BlobStore) BlobStore {
	return &emptyBlobStore{BlobStore: base}
}

func (ba *emptyBlobStore) Get(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	if d.IsEmpty() {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	return ba.BlobStore.Get(ctx, d)
}

func (ba *emptyBlobStore) Put(ctx context.Context, d digest.Digest, r io.Reader) error {
	if d.IsEmpty() {
		// Still read r: a client sending data under the empty digest is
		// wrong, and the verifying store above says so.
		_, err := io.Copy(io.Discard, r)
		return err
	}
	return ba.BlobStore.Put(ctx, d, r)
}

func (ba *emptyBlobStore) FindMissing(ctx context.Context, ds []digest.Digest) ([]digest.Digest, error) {
	rest := ds[:0:0]
	for _, d := range ds {
		if !d.IsEmpty() {
			rest = append(rest, d)
		}
	}
	if len(rest) == 0 {
		return nil, nil
	}
	return ba.BlobStore.FindMissing(ctx, rest)
}
