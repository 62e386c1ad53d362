package worker

import (
	"context"
	"errors"
	"os"
	"path"
	"path/filepath"
	"syscall"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sync/errgroup"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kiln-build/kiln/cas/casclient"
	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/cas/inputtree"
	"github.com/kiln-build/kiln/internal/rpcstatus"
)

const (
	// maxInputEntries bounds the files, directories and symlinks of one
	// materialized input root. A Merkle tree that repeats a subtree at
	// every level expands exponentially; this stops it.
	maxInputEntries = 1 << 21

	// linkConcurrency bounds the files linked or downloaded at once for
	// one action.
	linkConcurrency = 16
)

// missingBlobsError is FAILED_PRECONDITION with a PreconditionFailure that
// lists each missing blob as a MISSING violation with subject
// "blobs/{hash}/{size}": what makes Bazel upload them and retry.
func missingBlobsError(what string, ds []digest.Digest) error {
	pf := &errdetails.PreconditionFailure{}
	for _, d := range ds {
		pf.Violations = append(pf.Violations, &errdetails.PreconditionFailure_Violation{
			Type: "MISSING", Subject: d.Subject(), Description: what + " is not in the CAS",
		})
	}
	s := status.Newf(codes.FailedPrecondition, "%s: %d blob(s) missing from the CAS, first %s", what, len(ds), ds[0])
	if withDetails, err := s.WithDetails(pf); err == nil {
		s = withDetails
	}
	return s.Err()
}

// inputTree is a validated input root: every directory of it by digest.
type inputTree struct {
	root digest.Digest
	dirs map[digest.Digest]*repb.Directory
}

// fetchInputTree collects the input tree below root and checks every
// directory reachable from it with inputtree.ValidateDirectory, at the
// shallowest depth where it appears (a directory valid there is valid
// deeper). The directories come from inline, the serialized ones the
// server sent with the assignment, each indexed under the digest of its
// bytes; if inline lacks the root, from GetTree. GetTree answers Directory
// messages, not their bytes, so each is indexed under the digest of its
// deterministic encoding. A directory whose original encoding differed, or
// that neither source had, is read by digest with BatchRead. Missing
// directories are FAILED_PRECONDITION listing all of them; an invalid tree
// is InvalidArgument naming the path.
func fetchInputTree(ctx context.Context, cl *casclient.Client, root digest.Digest, inline [][]byte) (*inputTree, error) {
	fn := cl.Function()
	t := &inputTree{root: root, dirs: map[digest.Digest]*repb.Directory{}}
	if root.IsEmpty() {
		t.dirs[root] = &repb.Directory{}
		return t, nil
	}
	index := map[digest.Digest]*repb.Directory{}
	for _, data := range inline {
		dir := &repb.Directory{}
		if err := proto.Unmarshal(data, dir); err == nil { // one that does not parse is read, and reported, below
			index[digest.FromBytes(fn, data)] = dir
		}
	}
	if _, ok := index[root]; !ok {
		list, err := cl.GetTree(ctx, root)
		switch {
		case rpcstatus.IsNotFound(err):
			return nil, missingBlobsError("input root "+root.String(), []digest.Digest{root})
		case err != nil:
			return nil, rpcstatus.Wrap(err, "input root")
		}
		for _, dir := range list {
			data, err := proto.MarshalOptions{Deterministic: true}.Marshal(dir)
			if err != nil {
				return nil, status.Errorf(codes.Internal, "input root %s: %v", root, err)
			}
			index[digest.FromBytes(fn, data)] = dir
		}
	}

	type item struct {
		d     digest.Digest
		path  string
		depth int
	}
	var missing []digest.Digest
	seen := map[digest.Digest]bool{root: true}
	level := []item{{root, ".", 0}}
	for len(level) > 0 {
		var need []digest.Digest
		for _, it := range level {
			if _, ok := index[it.d]; !ok && !it.d.IsEmpty() {
				need = append(need, it.d)
			}
		}
		if len(need) > 0 {
			blobs, err := cl.BatchRead(ctx, need)
			if err != nil && !rpcstatus.IsNotFound(err) {
				return nil, rpcstatus.Wrap(err, "input root")
			}
			for _, d := range need {
				data, ok := blobs[d]
				if !ok {
					missing = append(missing, d)
					continue
				}
				dir := &repb.Directory{}
				if err := proto.Unmarshal(data, dir); err != nil {
					return nil, status.Errorf(codes.InvalidArgument, "input root %s: directory %s does not parse: %v", root, d, err)
				}
				index[d] = dir
			}
		}
		var next []item
		for _, it := range level {
			dir, ok := index[it.d]
			if !ok {
				if !it.d.IsEmpty() {
					continue // missing, reported below
				}
				dir = &repb.Directory{}
			}
			if err := inputtree.ValidateDirectory(fn, dir, it.depth); err != nil {
				return nil, rpcstatus.Wrapf(err, "input root %s: directory %s", root, it.path)
			}
			t.dirs[it.d] = dir
			for _, sub := range dir.GetDirectories() {
				sd, _ := digest.FromProto(fn, sub.GetDigest()) // validated above
				if !seen[sd] {
					seen[sd] = true
					next = append(next, item{sd, path.Join(it.path, sub.GetName()), it.depth + 1})
				}
			}
		}
		level = next
	}
	if len(missing) > 0 {
		return nil, missingBlobsError("input root "+root.String(), missing)
	}
	return t, nil
}

// fileJob is one input file to put in place.
type fileJob struct {
	key  cacheKey
	path string
}

// materialize creates the input tree below dst (an existing empty
// directory): directories, symlinks, and files hardlinked from the cache,
// fetching the files that are not cached. Small files are read with
// BatchReadBlobs, many per request, and written into the cache; large ones
// are streamed into it with ByteStream. All files are looked for before
// any is linked, so that missing inputs are reported together
// (FAILED_PRECONDITION, MISSING violations) rather than one per attempt.
func (w *worker) materialize(ctx context.Context, cl *casclient.Client, t *inputTree, dst string) error {
	fn := cl.Function()
	var jobs []fileJob
	entries := 0
	type pending struct {
		d    digest.Digest
		path string
	}
	stack := []pending{{t.root, dst}}
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		dir := t.dirs[p.d]
		entries += len(dir.GetFiles()) + len(dir.GetDirectories()) + len(dir.GetSymlinks())
		if entries > maxInputEntries {
			return status.Errorf(codes.InvalidArgument, "input root %s: more than %d entries", t.root, maxInputEntries)
		}
		for _, f := range dir.GetFiles() {
			d, _ := digest.FromProto(fn, f.GetDigest()) // validated
			jobs = append(jobs, fileJob{cacheKey{d, f.GetIsExecutable()}, filepath.Join(p.path, f.GetName())})
		}
		for _, s := range dir.GetSymlinks() {
			if err := os.Symlink(s.GetTarget(), filepath.Join(p.path, s.GetName())); err != nil {
				return inputFSError(err, "symlink", filepath.Join(p.path, s.GetName()))
			}
		}
		for _, sub := range dir.GetDirectories() {
			sp := filepath.Join(p.path, sub.GetName())
			if err := os.Mkdir(sp, 0o755); err != nil {
				return inputFSError(err, "directory", sp)
			}
			sd, _ := digest.FromProto(fn, sub.GetDigest())
			stack = append(stack, pending{sd, sp})
		}
	}

	// Files not cached yet: small ones are read in batches and written
	// straight into the cache (a BatchReadBlobs answer also says which
	// are missing); large ones are checked with FindMissingBlobs and
	// streamed by the cache one by one when they are linked below.
	var small []cacheKey
	var large []digest.Digest
	var order []digest.Digest // first appearance of each uncached digest
	seen := map[cacheKey]bool{}
	for _, j := range jobs {
		k := j.key
		if k.d.Size() == 0 || seen[k] || w.cache.has(k) {
			continue
		}
		seen[k] = true
		order = append(order, k.d)
		if k.d.Size() <= cl.MaxBatchBlob() && k.d.Size() <= w.cache.maxBytes {
			small = append(small, k)
		} else {
			large = append(large, k.d)
		}
	}
	var missingSmall, missingLarge []digest.Digest
	g, gctx := errgroup.WithContext(ctx)
	if len(large) > 0 {
		g.Go(func() error {
			var err error
			missingLarge, err = cl.FindMissing(gctx, large)
			return rpcstatus.Wrap(err, "input files")
		})
	}
	if len(small) > 0 {
		g.Go(func() error {
			var err error
			missingSmall, err = w.cache.fill(gctx, small, cl.MaxBatchBytes(), cl.BatchRead)
			return rpcstatus.Wrap(err, "input files")
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if len(missingSmall)+len(missingLarge) > 0 {
		gone := map[digest.Digest]bool{}
		for _, d := range append(missingSmall, missingLarge...) {
			gone[d] = true
		}
		var missing []digest.Digest
		for _, d := range order {
			if gone[d] {
				missing = append(missing, d)
				delete(gone, d)
			}
		}
		return missingBlobsError("input root "+t.root.String(), missing)
	}

	fetch := func(ctx context.Context, d digest.Digest, path string) error {
		return cl.DownloadToFile(ctx, d, path, false)
	}
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(linkConcurrency)
	for _, j := range jobs {
		g.Go(func() error {
			if j.key.d.Size() == 0 {
				// Empty files are created, not linked: one shared inode
				// would reach the link limit first.
				if err := os.WriteFile(j.path, nil, j.key.mode()); err != nil {
					return inputFSError(err, "file", j.path)
				}
				return os.Chmod(j.path, j.key.mode()) // WriteFile's mode is subject to the umask
			}
			err := w.cache.link(gctx, j.key, j.path, fetch)
			if rpcstatus.IsNotFound(err) {
				// Gone between FindMissing and the read.
				return missingBlobsError("input root "+t.root.String(), []digest.Digest{j.key.d})
			}
			return err
		})
	}
	return g.Wait()
}

// inputFSError classifies a failure to create an input: a name too long for
// the filesystem is the client's problem, anything else the worker's.
func inputFSError(err error, kind, p string) error {
	if errors.Is(err, syscall.ENAMETOOLONG) {
		return status.Errorf(codes.InvalidArgument, "input %s %s: %v", kind, p, err)
	}
	return status.Errorf(codes.Internal, "input %s %s: %v", kind, p, err)
}
