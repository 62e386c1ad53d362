// Package cas is kiln's content-addressable storage: the BlobStore
// interface, the decorators that add verification and limits to any store,
// and the construction of a store stack from configuration.
//
// Backends live in subpackages (cas/memory, cas/disk); the gRPC services in
// cas/casserver; action-cache semantics in cas/actioncache.
package cas

import (
	"context"
	"io"

	"github.com/kiln-build/kiln/cas/digest"
)

// BlobStore stores blobs keyed by digest. It backs both the CAS (where the
// content of a blob hashes to its digest, enforced by NewVerifyingStore) and
// the action cache (where the key is derived from instance and action, and
// the content is a serialized ActionResult of any length).
//
// Errors are gRPC statuses: NotFound is a normal miss; anything else is a
// failure and must not be treated as a miss.
type BlobStore interface {
	// Get returns a reader of the whole blob stored under d. A miss is
	// NotFound. If the stored bytes turn out to be corrupt, the reader
	// returns an error (never short or wrong data without one) and the
	// backend drops the blob, so the next Get is NotFound. The caller
	// must Close the reader.
	Get(ctx context.Context, d digest.Digest) (io.ReadCloser, error)

	// Put stores the bytes read from r until io.EOF under d. If r returns
	// any other error, or ctx ends first, nothing is stored and that error
	// is returned: a blob becomes visible whole or not at all. Storing a
	// key that is already present is allowed and leaves one copy.
	Put(ctx context.Context, d digest.Digest, r io.Reader) error

	// FindMissing returns the digests of ds that are not stored, in the
	// order given. Digests that are present have their lifetime extended
	// as if they had been read.
	FindMissing(ctx context.Context, ds []digest.Digest) ([]digest.Digest, error)
}
