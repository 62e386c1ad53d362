package cas

import (
	"bytes"
	"context"
	"encoding/hex"
	"hash"
	"io"

	"github.com/kiln-build/kiln/cas/digest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// verifyingStore checks on Put that the content hashes to its digest. Get
// and FindMissing pass through to the embedded store.
type verifyingStore struct {
	BlobStore
}

// NewVerifyingStore returns a store that verifies every upload against its
// digest as the bytes flow into base: it hashes them with the digest's
// function in the same single pass and counts them. If the content does not
// match, the reader given to base fails with InvalidArgument instead of
// returning io.EOF, so base stores nothing and Put returns that error.
//
// Use it in front of the CAS, never in front of the action cache, whose keys
// are not hashes of the content. Stored data is not re-hashed on Get: the
// backends detect corruption at rest with their own cheaper checksums.
func NewVerifyingStore(base BlobStore) BlobStore {
	return &verifyingStore{BlobStore: base}
}

// Put stores r under d if its bytes hash to d.
func (ba *verifyingStore) Put(ctx context.Context, d digest.Digest, r io.Reader) error {
	return ba.BlobStore.Put(ctx, d, &verifyingReader{r: r, d: d, h: d.Function().New()})
}

// verifyingReader passes bytes through while hashing and counting them. Its
// errors are sticky: once it has failed, every Read returns the same error.
type verifyingReader struct {
	r   io.Reader
	d   digest.Digest
	h   hash.Hash
	n   int64 // bytes read so far
	err error
}

func (vr *verifyingReader) Read(p []byte) (int, error) {
	if vr.err != nil {
		return 0, vr.err
	}
	n, err := vr.r.Read(p)
	if vr.n+int64(n) > vr.d.Size() {
		// Fail as soon as the stream is too long, without waiting for its
		// end: a client must not make us swallow an endless stream.
		vr.err = status.Errorf(codes.InvalidArgument, "data for blob %s has at least %d bytes, want %d", vr.d, vr.n+int64(n), vr.d.Size())
		return 0, vr.err
	}
	vr.h.Write(p[:n])
	vr.n += int64(n)
	if err == io.EOF {
		if vr.n != vr.d.Size() {
			vr.err = status.Errorf(codes.InvalidArgument, "data for blob %s has %d bytes, want %d", vr.d, vr.n, vr.d.Size())
			return n, vr.err
		}
		if sum := vr.h.Sum(nil); !bytes.Equal(sum, vr.d.RawHash()) {
			vr.err = status.Errorf(codes.InvalidArgument, "data for blob %s hashes to %s", vr.d, hex.EncodeToString(sum))
			return n, vr.err
		}
		vr.err = io.EOF
	} else if err != nil {
		vr.err = err
	}
	return n, err
}
