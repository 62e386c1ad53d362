// Package actioncache implements REAPI action-cache semantics on a
// cas.BlobStore: validation of ActionResults, completeness checking against
// the CAS, inlining, and the ActionCache gRPC service.
//
// Entries are kept per instance name: the storage key of an entry is the
// SHA-256 of the instance name and the action digest, so two instances
// never see each other's results, whatever their names look like.
package actioncache

import (
	"context"
	"crypto/sha256"
	"io"
	"strconv"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kiln-build/kiln/cas"
	"github.com/kiln-build/kiln/cas/casserver"
	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/internal/rpcstatus"
)

// MaxEntrySize bounds a serialized ActionResult; anything larger is
// refused on update and treated as corrupt on read.
const MaxEntrySize = 4 << 20

// Cache is the action cache: results keyed by instance and action digest,
// whose outputs live in a CAS.
type Cache struct {
	results cas.BlobStore
	blobs   cas.BlobStore
}

// New returns a cache storing entries in results and checking outputs
// against blobs (the CAS).
func New(results, blobs cas.BlobStore) *Cache {
	return &Cache{results: results, blobs: blobs}
}

// Blobs returns the CAS that results refer to, as given to New. The
// execution service stores there the outputs that workers send along with
// their results.
func (c *Cache) Blobs() cas.BlobStore { return c.blobs }

// key derives the storage key of an entry.
func key(instance string, action digest.Digest) digest.Digest {
	h := sha256.New()
	io.WriteString(h, instance)
	h.Write([]byte{0})
	io.WriteString(h, action.String())
	return digest.FromHash(digest.SHA256, h.Sum(nil), 0)
}

// Get returns the complete result stored for action, or NotFound when there
// is none or when any of its outputs is no longer in the CAS (no dangling
// hits). A hit extends the lifetime of every output blob. A stored entry
// that does not parse is reported as a miss, never served.
func (c *Cache) Get(ctx context.Context, instance string, action digest.Digest) (*repb.ActionResult, error) {
	k := key(instance, action)
	rc, err := c.results.Get(ctx, k)
	if err != nil {
		return nil, rpcstatus.Wrapf(err, "action result for %s", action)
	}
	data, err := io.ReadAll(io.LimitReader(rc, MaxEntrySize+1))
	rc.Close()
	if err != nil {
		return nil, rpcstatus.Wrapf(err, "action result for %s", action)
	}
	res := &repb.ActionResult{}
	if len(data) > MaxEntrySize || proto.Unmarshal(data, res) != nil {
		return nil, status.Errorf(codes.NotFound, "action result for %s: stored entry is corrupt", action)
	}
	fn := action.Function()
	if err := Validate(fn, res); err != nil {
		return nil, status.Errorf(codes.NotFound, "action result for %s: stored entry is invalid: %v", action, status.Convert(err).Message())
	}
	if err := c.checkComplete(ctx, fn, res); err != nil {
		return nil, rpcstatus.Wrapf(err, "action result for %s", action)
	}
	return res, nil
}

// Put validates res and stores it for action.
func (c *Cache) Put(ctx context.Context, instance string, action digest.Digest, res *repb.ActionResult) error {
	if err := Validate(action.Function(), res); err != nil {
		return rpcstatus.Wrapf(err, "action result for %s", action)
	}
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(res)
	if err != nil {
		return status.Errorf(codes.Internal, "action result for %s: %v", action, err)
	}
	if len(data) > MaxEntrySize {
		return status.Errorf(codes.InvalidArgument, "action result for %s is %d bytes, more than the limit of %d", action, len(data), MaxEntrySize)
	}
	return rpcstatus.Wrapf(c.results.Put(ctx, key(instance, action), bytesReader(data)), "action result for %s", action)
}

// checkComplete returns NotFound unless every blob res refers to is in the
// CAS: output files, stdout, stderr, output trees and every file and
// directory inside them. FindMissing also refreshes all of them.
func (c *Cache) checkComplete(ctx context.Context, fn digest.Function, res *repb.ActionResult) error {
	var need []digest.Digest
	add := func(pb *repb.Digest) {
		if pb != nil {
			need = append(need, mustDigest(fn, pb))
		}
	}
	for _, f := range res.GetOutputFiles() {
		add(f.GetDigest())
	}
	add(res.GetStdoutDigest())
	add(res.GetStderrDigest())
	for _, dir := range res.GetOutputDirectories() {
		add(dir.GetTreeDigest())
	}
	if err := c.requirePresent(ctx, need); err != nil {
		return err
	}
	// The trees are present; now everything inside them must be too.
	need = need[:0]
	for _, dir := range res.GetOutputDirectories() {
		tree := &repb.Tree{}
		td := mustDigest(fn, dir.GetTreeDigest())
		if err := casserver.ReadProto(ctx, c.blobs, td, tree); err != nil {
			if status.Code(err) == codes.InvalidArgument {
				return status.Errorf(codes.NotFound, "output directory %q: tree %s does not parse", dir.GetPath(), td)
			}
			return rpcstatus.Wrapf(err, "output directory %q", dir.GetPath())
		}
		for _, d := range append([]*repb.Directory{tree.GetRoot()}, tree.GetChildren()...) {
			for _, f := range d.GetFiles() {
				fd, err := digest.FromProto(fn, f.GetDigest())
				if err != nil {
					return status.Errorf(codes.NotFound, "output directory %q: tree %s has a bad file digest", dir.GetPath(), td)
				}
				need = append(need, fd)
			}
		}
	}
	return c.requirePresent(ctx, need)
}

func (c *Cache) requirePresent(ctx context.Context, need []digest.Digest) error {
	if len(need) == 0 {
		return nil
	}
	missing, err := c.blobs.FindMissing(ctx, need)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return status.Errorf(codes.NotFound, "output blob %s is no longer in the CAS (%d missing)", missing[0], len(missing))
	}
	return nil
}

// mustDigest converts a digest that Validate has already checked.
func mustDigest(fn digest.Function, pb *repb.Digest) digest.Digest {
	d, err := digest.FromProto(fn, pb)
	if err != nil {
		panic("actioncache: digest not validated: " + strconv.Quote(pb.String()))
	}
	return d
}
