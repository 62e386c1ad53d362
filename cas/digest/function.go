package digest

import (
	"crypto/sha256"
	"hash"
	"sort"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/zeebo/blake3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// MaxHashSize is the largest hash, in bytes, that a Digest can hold. Every
// supported function fits; adding one with longer hashes means growing it.
const MaxHashSize = 32

// Function is a digest function kiln supports. Each one is a value of this
// interface; code that needs to tell them apart asks the interface, it never
// switches on the enum.
type Function interface {
	// Enum is the REAPI value naming this function.
	Enum() repb.DigestFunction_Value
	// Name is the lowercase name used in ByteStream resource names.
	Name() string
	// HashSize is the length of a hash in bytes (twice that in hex).
	HashSize() int
	// New returns a fresh hasher.
	New() hash.Hash
	// InResourceName tells whether resource names carry Name() as a path
	// component. The spec omits it for the legacy functions (SHA-256 and
	// others whose hash length identifies them) and requires it otherwise.
	InResourceName() bool
}

type sha256Function struct{}

func (sha256Function) Enum() repb.DigestFunction_Value { return repb.DigestFunction_SHA256 }
func (sha256Function) Name() string                    { return "sha256" }
func (sha256Function) HashSize() int                   { return sha256.Size }
func (sha256Function) New() hash.Hash                  { return sha256.New() }
func (sha256Function) InResourceName() bool            { return false }

type blake3Function struct{}

func (blake3Function) Enum() repb.DigestFunction_Value { return repb.DigestFunction_BLAKE3 }
func (blake3Function) Name() string                    { return "blake3" }
func (blake3Function) HashSize() int                   { return 32 }
func (blake3Function) New() hash.Hash                  { return blake3.New() }
func (blake3Function) InResourceName() bool            { return true }

var (
	// SHA256 is the default digest function, and the one used when a
	// request leaves digest_function unset.
	SHA256 Function = sha256Function{}
	// BLAKE3 is BLAKE3 with 256-bit output, about eight times faster than
	// SHA-256 on CPUs without SHA instructions.
	BLAKE3 Function = blake3Function{}
)

// supported lists every function kiln knows, indexed by enum. It is never
// modified after package initialization.
var supported = map[repb.DigestFunction_Value]Function{
	repb.DigestFunction_SHA256: SHA256,
	repb.DigestFunction_BLAKE3: BLAKE3,
}

// FunctionFromEnum returns the function named by a request's digest_function
// field. UNKNOWN (unset) means SHA-256, as the spec says for old clients. A
// function kiln does not implement is InvalidArgument.
func FunctionFromEnum(v repb.DigestFunction_Value) (Function, error) {
	if v == repb.DigestFunction_UNKNOWN {
		return SHA256, nil
	}
	if f, ok := supported[v]; ok {
		return f, nil
	}
	return nil, status.Errorf(codes.InvalidArgument, "digest function %s is not supported", v)
}

// functionFromName returns the function whose resource-name component is
// name, for those that appear in resource names.
func functionFromName(name string) (Function, bool) {
	for _, f := range supported {
		if f.InResourceName() && f.Name() == name {
			return f, true
		}
	}
	return nil, false
}

// SupportedFunctions returns the enums of every supported function, sorted,
// for the Capabilities service.
func SupportedFunctions() []repb.DigestFunction_Value {
	out := make([]repb.DigestFunction_Value, 0, len(supported))
	for v := range supported {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
