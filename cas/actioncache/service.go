package actioncache

import (
	"bytes"
	"context"
	"io"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-build/kiln/cas/casserver"
	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/internal/rpcstatus"
)

// MaxInlineBytes bounds the total size of stdout, stderr and output file
// contents inlined into one GetActionResult response. Larger ones are left
// for the client to fetch, as the spec allows.
const MaxInlineBytes = 1 << 20

// Service implements the ActionCache gRPC service.
type Service struct {
	repb.UnimplementedActionCacheServer
	cache *Cache
}

var _ repb.ActionCacheServer = (*Service)(nil)

// NewService returns the ActionCache service over cache.
func NewService(cache *Cache) *Service { return &Service{cache: cache} }

// GetActionResult returns the cached result, inlining what was asked for.
func (s *Service) GetActionResult(ctx context.Context, req *repb.GetActionResultRequest) (*repb.ActionResult, error) {
	fn, action, err := parseAction(req.GetInstanceName(), req.GetDigestFunction(), req.GetActionDigest())
	if err != nil {
		return nil, err
	}
	res, err := s.cache.Get(ctx, req.GetInstanceName(), action)
	if err != nil {
		return nil, err
	}
	if err := s.inline(ctx, fn, res, req); err != nil {
		return nil, err
	}
	return res, nil
}

// UpdateActionResult validates and stores a result.
func (s *Service) UpdateActionResult(ctx context.Context, req *repb.UpdateActionResultRequest) (*repb.ActionResult, error) {
	_, action, err := parseAction(req.GetInstanceName(), req.GetDigestFunction(), req.GetActionDigest())
	if err != nil {
		return nil, err
	}
	if err := s.cache.Put(ctx, req.GetInstanceName(), action, req.GetActionResult()); err != nil {
		return nil, err
	}
	return req.GetActionResult(), nil
}

func parseAction(instance string, fnv repb.DigestFunction_Value, pb *repb.Digest) (digest.Function, digest.Digest, error) {
	if err := digest.ValidateInstanceName(instance); err != nil {
		return nil, digest.Digest{}, err
	}
	fn, err := digest.FunctionFromEnum(fnv)
	if err != nil {
		return nil, digest.Digest{}, err
	}
	d, err := digest.FromProto(fn, pb)
	if err != nil {
		return nil, digest.Digest{}, rpcstatus.Wrap(err, "action_digest")
	}
	return fn, d, nil
}

// inline fills stdout_raw, stderr_raw and output file contents as asked,
// smallest budget first, within MaxInlineBytes in total. Blobs were just
// checked to be present; one vanishing in between is a miss.
func (s *Service) inline(ctx context.Context, fn digest.Function, res *repb.ActionResult, req *repb.GetActionResultRequest) error {
	budget := int64(MaxInlineBytes)
	type job struct {
		d   digest.Digest
		set func([]byte)
	}
	var jobs []job
	want := func(pb *repb.Digest, set func([]byte)) {
		if pb == nil || pb.GetSizeBytes() > budget {
			return
		}
		budget -= pb.GetSizeBytes()
		jobs = append(jobs, job{mustDigest(fn, pb), set})
	}
	if req.GetInlineStdout() && len(res.GetStdoutRaw()) == 0 {
		want(res.GetStdoutDigest(), func(b []byte) { res.StdoutRaw = b })
	}
	if req.GetInlineStderr() && len(res.GetStderrRaw()) == 0 {
		want(res.GetStderrDigest(), func(b []byte) { res.StderrRaw = b })
	}
	if files := req.GetInlineOutputFiles(); len(files) > 0 {
		asked := make(map[string]bool, len(files))
		for _, p := range files {
			asked[p] = true
		}
		for _, f := range res.GetOutputFiles() {
			if asked[f.GetPath()] && len(f.GetContents()) == 0 {
				want(f.GetDigest(), func(b []byte) { f.Contents = b })
			}
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, j := range jobs {
		g.Go(func() error {
			data, err := casserver.ReadBlob(gctx, s.cache.blobs, j.d)
			if err != nil {
				return rpcstatus.Wrapf(err, "inline blob %s", j.d)
			}
			j.set(data) // each job sets a different field
			return nil
		})
	}
	return g.Wait()
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
