package cas

import (
	"context"
	"io"

	"github.com/kiln-build/kiln/cas/digest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// sizeLimitStore rejects uploads larger than a limit. Get and FindMissing
// pass through to the embedded store.
type sizeLimitStore struct {
	BlobStore
	maxBlobBytes int64
}

// NewSizeLimitStore returns a store that refuses to Put a blob whose digest
// size exceeds maxBlobBytes, with InvalidArgument and without reading any of
// it. It also stops an upload whose content runs past maxBlobBytes although
// its digest claimed less (action-cache entries, whose key size is not the
// content length), counting the bytes as they flow without buffering them.
func NewSizeLimitStore(base BlobStore, maxBlobBytes int64) BlobStore {
	return &sizeLimitStore{BlobStore: base, maxBlobBytes: maxBlobBytes}
}

// Put stores r under d if d and r are within the limit.
func (ba *sizeLimitStore) Put(ctx context.Context, d digest.Digest, r io.Reader) error {
	if d.Size() > ba.maxBlobBytes {
		return status.Errorf(codes.InvalidArgument, "blob %s is larger than the limit of %d bytes", d, ba.maxBlobBytes)
	}
	return ba.BlobStore.Put(ctx, d, &limitReader{r: r, d: d, max: ba.maxBlobBytes})
}

// limitReader fails with InvalidArgument once more than max bytes have
// passed through it. The error is sticky.
type limitReader struct {
	r   io.Reader
	d   digest.Digest
	max int64
	n   int64
	err error
}

func (lr *limitReader) Read(p []byte) (int, error) {
	if lr.err != nil {
		return 0, lr.err
	}
	n, err := lr.r.Read(p)
	lr.n += int64(n)
	if lr.n > lr.max {
		lr.err = status.Errorf(codes.InvalidArgument, "data for blob %s is larger than the limit of %d bytes", lr.d, lr.max)
		return 0, lr.err
	}
	return n, err
}
