package digest_test

import (
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/cas/digest"
)

const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name string
		hash string
		size int64
		ok   bool
	}{
		{"Valid", emptySHA256, 0, true},
		{"UpperCase", strings.ToUpper(emptySHA256), 0, false},
		{"NotHex", strings.Repeat("x", 64), 0, false},
		{"Short", emptySHA256[:63], 0, false},
		{"Long", emptySHA256 + "0", 0, false},
		{"Empty", "", 0, false},
		{"NegativeSize", emptySHA256, -1, false},
		{"HugeSize", emptySHA256, 1 << 62, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := digest.New(digest.SHA256, tc.hash, tc.size)
			if tc.ok != (err == nil) {
				t.Fatalf("New(%q, %d) = %v, want ok=%v", tc.hash, tc.size, err, tc.ok)
			}
			if err != nil {
				if status.Code(err) != codes.InvalidArgument {
					t.Fatalf("code %v, want InvalidArgument", status.Code(err))
				}
				return
			}
			if d.Hash() != tc.hash || d.Size() != tc.size {
				t.Fatalf("round trip: %s", d)
			}
		})
	}
}

func TestEmptyAndFunctions(t *testing.T) {
	if !digest.Empty(digest.SHA256).IsEmpty() || digest.Empty(digest.SHA256).Hash() != emptySHA256 {
		t.Fatal("empty SHA-256 digest wrong")
	}
	if digest.FromBytes(digest.SHA256, []byte("a")).IsEmpty() {
		t.Fatal("non-empty blob reported empty")
	}
	b3 := digest.Empty(digest.BLAKE3)
	if b3 == digest.Empty(digest.SHA256) || !b3.IsEmpty() || !strings.HasPrefix(b3.String(), "blake3/") {
		t.Fatalf("BLAKE3 empty digest %s", b3)
	}
	if f, err := digest.FunctionFromEnum(repb.DigestFunction_UNKNOWN); err != nil || f != digest.SHA256 {
		t.Fatal("unset function is not SHA-256")
	}
	if _, err := digest.FunctionFromEnum(repb.DigestFunction_SHA1); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("SHA1: %v", err)
	}
}

func TestParseResources(t *testing.T) {
	h := emptySHA256
	for _, tc := range []struct {
		name     string
		write    bool
		in       string
		instance string
		comp     repb.Compressor_Value
		fn       digest.Function
		ok       bool
	}{
		{"ReadPlain", false, "blobs/" + h + "/0", "", repb.Compressor_IDENTITY, digest.SHA256, true},
		{"ReadInstance", false, "a/b/blobs/" + h + "/0", "a/b", repb.Compressor_IDENTITY, digest.SHA256, true},
		{"ReadZstd", false, "i/compressed-blobs/zstd/" + h + "/0", "i", repb.Compressor_ZSTD, digest.SHA256, true},
		{"ReadBlake3", false, "blobs/blake3/" + h + "/0", "", repb.Compressor_IDENTITY, digest.BLAKE3, true},
		{"ReadTrailing", false, "blobs/" + h + "/0/x", "", 0, nil, false},
		{"ReadUnknownCompressor", false, "compressed-blobs/lz4/" + h + "/0", "", 0, nil, false},
		{"ReadUpperCompressor", false, "compressed-blobs/ZSTD/" + h + "/0", "", 0, nil, false},
		{"ReadIdentityCompressor", false, "compressed-blobs/identity/" + h + "/0", "", 0, nil, false},
		{"ReadNoSize", false, "blobs/" + h, "", 0, nil, false},
		{"ReadPlusSize", false, "blobs/" + h + "/+1", "", 0, nil, false},
		{"ReadLeadingZero", false, "blobs/" + h + "/01", "", 0, nil, false},
		{"ReadDotDotInstance", false, "../blobs/" + h + "/0", "", 0, nil, false},
		{"ReadEmptySegmentInstance", false, "a//blobs/" + h + "/0", "", 0, nil, false},
		{"WritePlain", true, "uploads/u/blobs/" + h + "/0", "", repb.Compressor_IDENTITY, digest.SHA256, true},
		{"WriteMetadata", true, "x/uploads/u/blobs/" + h + "/0/meta/data", "x", repb.Compressor_IDENTITY, digest.SHA256, true},
		{"WriteZstd", true, "uploads/u/compressed-blobs/zstd/" + h + "/0", "", repb.Compressor_ZSTD, digest.SHA256, true},
		{"WriteNoUUID", true, "uploads", "", 0, nil, false},
		{"WriteNoUploads", true, "blobs/" + h + "/0", "", 0, nil, false},
		{"WriteEmptyUUID", true, "uploads//blobs/" + h + "/0", "", 0, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parse := digest.ParseReadResource
			if tc.write {
				parse = digest.ParseWriteResource
			}
			r, err := parse(tc.in)
			if tc.ok != (err == nil) {
				t.Fatalf("parse(%q) = %+v, %v; want ok=%v", tc.in, r, err, tc.ok)
			}
			if err != nil {
				if status.Code(err) != codes.InvalidArgument {
					t.Fatalf("code %v", status.Code(err))
				}
				return
			}
			if r.Instance != tc.instance || r.Compressor != tc.comp || r.Digest.Function() != tc.fn {
				t.Fatalf("parse(%q) = %+v", tc.in, r)
			}
		})
	}
}

// FuzzParseResource checks that parsing never panics and that whatever
// parses re-serializes to a name that parses to the same thing.
func FuzzParseResource(f *testing.F) {
	for _, s := range []string{
		"blobs/" + emptySHA256 + "/0", "i/uploads/u/blobs/" + emptySHA256 + "/0/m",
		"compressed-blobs/zstd/blake3/" + emptySHA256 + "/12", "a/b/c", "", "//", "uploads/x/blobs",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if r, err := digest.ParseReadResource(s); err == nil {
			again, err := digest.ParseReadResource(r.ReadName())
			if err != nil || again != r {
				t.Fatalf("%q -> %+v -> %q -> %+v, %v", s, r, r.ReadName(), again, err)
			}
		} else if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("code %v", status.Code(err))
		}
		if r, err := digest.ParseWriteResource(s); err == nil {
			again, err := digest.ParseWriteResource(r.WriteName())
			if err != nil || again != r {
				t.Fatalf("%q -> %+v -> %q -> %+v, %v", s, r, r.WriteName(), again, err)
			}
		} else if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("code %v", status.Code(err))
		}
	})
}

// FuzzNew checks that New accepts exactly lowercase hex of the right length
// with a non-negative size, and round-trips what it accepts.
func FuzzNew(f *testing.F) {
	f.Add(emptySHA256, int64(0))
	f.Add("ABC", int64(-1))
	f.Fuzz(func(t *testing.T, h string, size int64) {
		d, err := digest.New(digest.SHA256, h, size)
		valid := len(h) == 64 && size >= 0 && strings.Trim(h, "0123456789abcdef") == ""
		if valid != (err == nil) {
			t.Fatalf("New(%q, %d): %v, valid=%v", h, size, err, valid)
		}
		if err == nil && (d.Hash() != h || d.Size() != size) {
			t.Fatalf("round trip %q -> %s", h, d)
		}
	})
}
