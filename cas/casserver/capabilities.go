package casserver

import (
	"context"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	smpb "github.com/bazelbuild/remote-apis/build/bazel/semver"

	"github.com/kiln-build/kiln/cas/digest"
)

// LowAPIVersion and HighAPIVersion bound the REAPI versions kiln speaks.
// 2.13 is the newest the remote-apis module describes; the optional
// features introduced since 2.0 that kiln lacks (split and splice) are
// announced as unsupported through their capability flags.
var (
	LowAPIVersion  = &smpb.SemVer{Major: 2, Minor: 0}
	HighAPIVersion = &smpb.SemVer{Major: 2, Minor: 13}
)

// ExecutionCapabilitiesFunc returns the execution capabilities to
// announce, or nil while the server has no execution service.
type ExecutionCapabilitiesFunc func(instance string) *repb.ExecutionCapabilities

// Capabilities implements the Capabilities service.
type Capabilities struct {
	maxBatchBytes int64
	execution     ExecutionCapabilitiesFunc
}

var _ repb.CapabilitiesServer = (*Capabilities)(nil)

// NewCapabilities returns the Capabilities service. execution may be nil.
func NewCapabilities(maxBatchBytes int64, execution ExecutionCapabilitiesFunc) *Capabilities {
	return &Capabilities{maxBatchBytes: maxBatchBytes, execution: execution}
}

// GetCapabilities describes the cache and, when present, execution.
func (c *Capabilities) GetCapabilities(ctx context.Context, req *repb.GetCapabilitiesRequest) (*repb.ServerCapabilities, error) {
	if err := digest.ValidateInstanceName(req.GetInstanceName()); err != nil {
		return nil, err
	}
	resp := &repb.ServerCapabilities{
		CacheCapabilities: &repb.CacheCapabilities{
			DigestFunctions: digest.SupportedFunctions(),
			ActionCacheUpdateCapabilities: &repb.ActionCacheUpdateCapabilities{
				UpdateEnabled: true,
			},
			MaxBatchTotalSizeBytes:          c.maxBatchBytes,
			SymlinkAbsolutePathStrategy:     repb.SymlinkAbsolutePathStrategy_DISALLOWED,
			SupportedCompressors:            []repb.Compressor_Value{repb.Compressor_ZSTD},
			SupportedBatchUpdateCompressors: []repb.Compressor_Value{repb.Compressor_ZSTD},
		},
		LowApiVersion:  LowAPIVersion,
		HighApiVersion: HighAPIVersion,
	}
	if c.execution != nil {
		resp.ExecutionCapabilities = c.execution(req.GetInstanceName())
	}
	return resp, nil
}
