// Package digest holds validated REAPI digests and the parsers of the wire
// forms that carry them (Digest messages and ByteStream resource names).
//
// A Digest value is always well formed: a supported function, a hash of the
// right length, and a non-negative size. Parse once at the RPC boundary;
// nothing inside kiln re-checks a hash.
package digest

import (
	"encoding/hex"
	"strconv"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Digest identifies a blob by digest function, hash and size. It is a small
// comparable value and can be used as a map key. The zero value is not a
// valid digest; IsZero tells it apart.
type Digest struct {
	fn   repb.DigestFunction_Value
	size int64
	hash [MaxHashSize]byte
}

// New validates hash (lowercase hex of the function's length) and size and
// returns the digest. Errors are InvalidArgument and name the problem.
func New(fn Function, hash string, size int64) (Digest, error) {
	var d Digest
	n := fn.HashSize()
	if len(hash) != 2*n {
		return d, status.Errorf(codes.InvalidArgument, "hash %q has %d characters, want %d for %s", truncate(hash), len(hash), 2*n, fn.Name())
	}
	for i := 0; i < len(hash); i++ {
		c := hash[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return d, status.Errorf(codes.InvalidArgument, "hash %q is not lowercase hex", truncate(hash))
		}
	}
	if size < 0 {
		return d, status.Errorf(codes.InvalidArgument, "digest %s/%d has a negative size", hash, size)
	}
	hex.Decode(d.hash[:], []byte(hash)) // cannot fail: checked above
	d.fn = fn.Enum()
	d.size = size
	return d, nil
}

// MustNew is New for tests and constants; it panics on invalid input.
func MustNew(fn Function, hash string, size int64) Digest {
	d, err := New(fn, hash, size)
	if err != nil {
		panic(err)
	}
	return d
}

// FromProto validates a wire Digest computed with fn. A nil message is
// InvalidArgument.
func FromProto(fn Function, pb *repb.Digest) (Digest, error) {
	if pb == nil {
		return Digest{}, status.Error(codes.InvalidArgument, "digest is missing")
	}
	return New(fn, pb.GetHash(), pb.GetSizeBytes())
}

// FromBytes computes the digest of data with fn.
func FromBytes(fn Function, data []byte) Digest {
	h := fn.New()
	h.Write(data)
	return FromHash(fn, h.Sum(nil), int64(len(data)))
}

// FromHash builds a digest from a raw hash sum produced by fn.
func FromHash(fn Function, sum []byte, size int64) Digest {
	d := Digest{fn: fn.Enum(), size: size}
	copy(d.hash[:], sum)
	return d
}

// Empty returns the digest of the empty blob under fn.
func Empty(fn Function) Digest { return FromBytes(fn, nil) }

// IsZero reports whether d is the zero value rather than a real digest.
func (d Digest) IsZero() bool { return d.fn == repb.DigestFunction_UNKNOWN }

// Function returns the digest function that produced d.
func (d Digest) Function() Function { return supported[d.fn] }

// Hash returns the hash in lowercase hex.
func (d Digest) Hash() string { return hex.EncodeToString(d.RawHash()) }

// RawHash returns the hash bytes (a slice of a copy; callers may keep it).
func (d Digest) RawHash() []byte { return d.hash[:d.Function().HashSize()] }

// Size returns the size of the blob in bytes.
func (d Digest) Size() int64 { return d.size }

// IsEmpty reports whether d is the digest of the empty blob.
func (d Digest) IsEmpty() bool { return d.size == 0 && d == empties[d.fn] }

// empties holds the empty-blob digest of each supported function.
var empties = func() map[repb.DigestFunction_Value]Digest {
	m := make(map[repb.DigestFunction_Value]Digest, len(supported))
	for v, f := range supported {
		m[v] = FromBytes(f, nil)
	}
	return m
}()

// Proto returns the wire form.
func (d Digest) Proto() *repb.Digest {
	return &repb.Digest{Hash: d.Hash(), SizeBytes: d.size}
}

// String returns "hash/size", prefixed with the function name for functions
// that resource names spell out, as in "blake3/hash/size".
func (d Digest) String() string {
	s := d.Hash() + "/" + strconv.FormatInt(d.size, 10)
	if f := d.Function(); f.InResourceName() {
		s = f.Name() + "/" + s
	}
	return s
}

// Subject returns the PreconditionFailure subject for a missing blob,
// "blobs/{hash}/{size}", exactly as Bazel expects it.
func (d Digest) Subject() string { return "blobs/" + d.String() }

// truncate shortens hostile input before it is echoed in an error.
func truncate(s string) string {
	const max = 80
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
