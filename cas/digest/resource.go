package digest

import (
	"strconv"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Compressor names the encoding of a ByteStream transfer. Identity is plain
// bytes ("blobs/..."); others come from "compressed-blobs/{name}/...".
type Compressor = repb.Compressor_Value

// reserved are the path segments that the spec forbids in instance names,
// so that the first of them marks where the instance name ends.
var reserved = map[string]bool{
	"blobs": true, "uploads": true, "actions": true, "actionResults": true,
	"operations": true, "capabilities": true, "compressed-blobs": true,
}

// Resource is a parsed ByteStream resource name.
type Resource struct {
	// Instance is the instance name, possibly empty or several segments.
	Instance string
	// UploadID is the client's uuid of a write; empty for reads.
	UploadID string
	// Compressor is IDENTITY for "blobs", else the named compressor.
	Compressor Compressor
	// Digest is the (uncompressed) digest of the blob.
	Digest Digest
}

// ParseReadResource parses "{instance}/blobs/{fn/}{hash}/{size}" and
// "{instance}/compressed-blobs/{compressor}/{fn/}{hash}/{size}". Any other
// shape is InvalidArgument.
func ParseReadResource(name string) (Resource, error) {
	segs := strings.Split(name, "/")
	i := firstReserved(segs)
	if i < 0 {
		return Resource{}, badResource(name, "no blobs or compressed-blobs segment")
	}
	r := Resource{Instance: strings.Join(segs[:i], "/")}
	if err := ValidateInstanceName(r.Instance); err != nil {
		return Resource{}, err
	}
	rest, err := r.parseBlob(name, segs[i:])
	if err != nil {
		return Resource{}, err
	}
	if len(rest) != 0 {
		return Resource{}, badResource(name, "unexpected segments after the size")
	}
	return r, nil
}

// ParseWriteResource parses
// "{instance}/uploads/{uuid}/blobs/{fn/}{hash}/{size}{/metadata}" and the
// compressed-blobs form. Trailing metadata is allowed and ignored.
func ParseWriteResource(name string) (Resource, error) {
	segs := strings.Split(name, "/")
	i := firstReserved(segs)
	if i < 0 || segs[i] != "uploads" {
		return Resource{}, badResource(name, "no uploads segment")
	}
	if i+1 >= len(segs) || segs[i+1] == "" {
		return Resource{}, badResource(name, "no upload id after uploads")
	}
	r := Resource{Instance: strings.Join(segs[:i], "/"), UploadID: segs[i+1]}
	if err := ValidateInstanceName(r.Instance); err != nil {
		return Resource{}, err
	}
	if _, err := r.parseBlob(name, segs[i+2:]); err != nil {
		return Resource{}, err
	}
	return r, nil
}

// parseBlob parses segs starting at "blobs" or "compressed-blobs" into r and
// returns the segments after the size.
func (r *Resource) parseBlob(name string, segs []string) ([]string, error) {
	if len(segs) == 0 {
		return nil, badResource(name, "no blobs segment")
	}
	switch segs[0] {
	case "blobs":
		r.Compressor = repb.Compressor_IDENTITY
		segs = segs[1:]
	case "compressed-blobs":
		if len(segs) < 2 {
			return nil, badResource(name, "no compressor")
		}
		c, ok := repb.Compressor_Value_value[strings.ToUpper(segs[1])]
		if !ok || c == int32(repb.Compressor_IDENTITY) || strings.ToLower(segs[1]) != segs[1] {
			return nil, badResource(name, "unknown compressor "+strconv.Quote(segs[1]))
		}
		r.Compressor = Compressor(c)
		segs = segs[2:]
	default:
		return nil, badResource(name, "expected blobs or compressed-blobs, got "+strconv.Quote(segs[0]))
	}
	fn := SHA256
	if len(segs) > 0 {
		if f, ok := functionFromName(segs[0]); ok {
			fn = f
			segs = segs[1:]
		}
	}
	if len(segs) < 2 {
		return nil, badResource(name, "no hash and size")
	}
	size, err := strconv.ParseInt(segs[1], 10, 64)
	if err != nil || segs[1] != strconv.FormatInt(size, 10) {
		return nil, badResource(name, "size "+strconv.Quote(truncate(segs[1]))+" is not a decimal number")
	}
	d, err := New(fn, segs[0], size)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "resource name %q: %s", truncate(name), status.Convert(err).Message())
	}
	r.Digest = d
	return segs[2:], nil
}

// ReadName returns the canonical read resource name for r (no upload id).
func (r Resource) ReadName() string {
	return r.prefix() + r.blobPath()
}

// WriteName returns the canonical write resource name for r.
func (r Resource) WriteName() string {
	return r.prefix() + "uploads/" + r.UploadID + "/" + r.blobPath()
}

func (r Resource) prefix() string {
	if r.Instance == "" {
		return ""
	}
	return r.Instance + "/"
}

func (r Resource) blobPath() string {
	if r.Compressor == repb.Compressor_IDENTITY {
		return "blobs/" + r.Digest.String()
	}
	return "compressed-blobs/" + strings.ToLower(r.Compressor.String()) + "/" + r.Digest.String()
}

func firstReserved(segs []string) int {
	for i, s := range segs {
		if reserved[s] {
			return i
		}
	}
	return -1
}

func badResource(name, why string) error {
	return status.Errorf(codes.InvalidArgument, "resource name %q: %s", truncate(name), why)
}

// ValidateInstanceName checks an instance name from a request: empty, or
// slash-separated segments that are neither empty, ".", ".." nor reserved.
func ValidateInstanceName(name string) error {
	if name == "" {
		return nil
	}
	for _, s := range strings.Split(name, "/") {
		if s == "" || s == "." || s == ".." || reserved[s] {
			return status.Errorf(codes.InvalidArgument, "instance name %q: segment %q is not allowed", truncate(name), s)
		}
	}
	return nil
}
