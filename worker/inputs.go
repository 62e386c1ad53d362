package worker

import (
	"context"
	"errors"
	"maps"
	"math"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
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
	"github.com/kiln-build/kiln/worker/runner"
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

// subtreeSize is what a directory of an input tree holds, all levels
// below it together.
type subtreeSize struct {
	entries int64 // files, symlinks and directories; at most maxInputEntries+1
	bytes   int64 // of the files; at most math.MaxInt64
}

// subtreeSizes returns the size of every directory of t, by digest. A
// directory that appears at several places is counted at each, as
// materializing it would create it at each.
func (t *inputTree) subtreeSizes(fn digest.Function) map[digest.Digest]subtreeSize {
	sizes := make(map[digest.Digest]subtreeSize, len(t.dirs))
	var size func(d digest.Digest) subtreeSize
	size = func(d digest.Digest) subtreeSize {
		if s, ok := sizes[d]; ok {
			return s
		}
		dir := t.dirs[d]
		s := subtreeSize{entries: int64(len(dir.GetFiles()) + len(dir.GetSymlinks()) + len(dir.GetDirectories()))}
		for _, f := range dir.GetFiles() {
			s.bytes = addSaturating(s.bytes, f.GetDigest().GetSizeBytes(), math.MaxInt64)
		}
		for _, sub := range dir.GetDirectories() {
			sd, _ := digest.FromProto(fn, sub.GetDigest()) // validated
			ss := size(sd)
			s.entries = addSaturating(s.entries, ss.entries, maxInputEntries+1)
			s.bytes = addSaturating(s.bytes, ss.bytes, math.MaxInt64)
		}
		s.entries = min(s.entries, maxInputEntries+1)
		sizes[d] = s
		return s
	}
	size(t.root) // validation bounds the depth, and so the recursion
	return sizes
}

// addSaturating returns a+b, or limit if that is more; a, b >= 0.
func addSaturating(a, b, limit int64) int64 {
	if b > limit-a {
		return limit
	}
	return a + b
}

// Directories of an input tree that an action gets from the directory
// cache, by a read-only mount (see dirCache and mountCandidates).
const (
	// minCachedDirEntries is the fewest entries (files, symlinks and
	// directories, all levels below) that make a directory worth a
	// mount. Materializing costs an inode per entry per action (30-500
	// µs each here), a mount a few syscalls in the sandbox's init. kiln
	// cc's gcc toolchain has 36 under usr/.
	minCachedDirEntries = 16
	// maxMountsPerAction bounds the mounts of one action.
	maxMountsPerAction = 16
)

// writes are the paths where an action writes, relative to the input
// root: its working directory, where it may create files, and its
// outputs, which it may create, replace or fill. A read-only cached
// directory must not hold any of them, nor lie inside an output.
type writes struct {
	wd      string
	outputs []string
}

// writesOf returns the paths where cmd writes. Its paths are validated.
func writesOf(cmd *repb.Command) writes {
	wr := writes{wd: cmd.GetWorkingDirectory()}
	for _, list := range [][]string{cmd.GetOutputPaths(), cmd.GetOutputFiles(), cmd.GetOutputDirectories()} {
		for _, o := range list {
			wr.outputs = append(wr.outputs, path.Join(wr.wd, o))
		}
	}
	return wr
}

// overlaps reports whether the directory at p may not be read-only: it
// holds (or is) the working directory or an output, or is inside an
// output.
func (wr writes) overlaps(p string) bool {
	if withinPath(wr.wd, p) {
		return true
	}
	for _, o := range wr.outputs {
		if withinPath(o, p) || withinPath(p, o) {
			return true
		}
	}
	return false
}

// withinPath reports whether the slash-separated relative path p is dir
// or below it; "" is the input root, which holds everything.
func withinPath(p, dir string) bool {
	return dir == "" || p == dir || strings.HasPrefix(p, dir+"/")
}

// mountCandidates chooses the directories of t that the action is to get
// from the directory cache: the shallowest ones, other than the root,
// with at least minCachedDirEntries entries, that fit the cache and that
// no path of wr overlaps (see writes.overlaps), and that the cache wants
// (the second time an action needs them; the first time they are
// materialized whole, not searched for smaller ones). At most
// maxMountsPerAction; none below another. The result maps each one's path
// (slash-separated, relative to the input root) to its digest.
func (w *worker) mountCandidates(fn digest.Function, t *inputTree, sizes map[digest.Digest]subtreeSize, wr writes) map[string]digest.Digest {
	out := map[string]digest.Digest{}
	type pending struct {
		d    digest.Digest
		path string
	}
	stack := []pending{{t.root, ""}}
	for len(stack) > 0 && len(out) < maxMountsPerAction {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, sub := range t.dirs[p.d].GetDirectories() {
			sd, _ := digest.FromProto(fn, sub.GetDigest())
			sp := path.Join(p.path, sub.GetName())
			size := sizes[sd]
			switch {
			case size.entries < minCachedDirEntries:
				// Nor is anything below it big enough.
			case wr.overlaps(sp) || size.bytes > w.dirCache.maxBytes:
				stack = append(stack, pending{sd, sp}) // a part of it may do
			case w.dirCache.wanted(sd, size.bytes) && len(out) < maxMountsPerAction:
				out[sp] = sd
			}
		}
	}
	return out
}

// reachedThroughSymlinks returns the path of a candidate (see
// mountCandidates) that a path of wr reaches through the symlinks of the
// tree materialized below root, or "" if there is none: the command
// would write through them into a directory that would be read-only.
// Paths that leave root are left to the checks that create them.
func reachedThroughSymlinks(root string, cands map[string]digest.Digest, wr writes) string {
	resolve := func(p string) string {
		host, err := resolveInRoot(root, p)
		if err != nil {
			return p
		}
		return filepath.ToSlash(strings.TrimPrefix(strings.TrimPrefix(host, root), "/"))
	}
	resolved := writes{wd: resolve(wr.wd)}
	for _, o := range wr.outputs {
		resolved.outputs = append(resolved.outputs, resolve(o))
	}
	for _, p := range slices.Sorted(maps.Keys(cands)) {
		if resolved.overlaps(p) {
			return p
		}
	}
	return ""
}

// inputs is what materialize made of an input tree besides the files in
// the build directory: the directory cache's entries that the action
// mounts, pinned until release.
type inputs struct {
	mounts []runner.Mount
	pinned []*dirEntry
}

// release unpins the directory cache entries of in, once the action is
// done with them.
func (w *worker) release(in *inputs) {
	for _, e := range in.pinned {
		w.dirCache.release(e)
	}
}

// materialize creates the input tree below dst (an existing empty
// directory), for an action that writes at wr: directories, symlinks, and
// files hardlinked from the cache, fetching the files that are not
// cached. Small files are read with BatchReadBlobs, many per request, and
// written into the cache; large ones are streamed into it with
// ByteStream. All files are looked for before any is linked, so that
// missing inputs are reported together (FAILED_PRECONDITION, MISSING
// violations) rather than one per attempt.
//
// With a directory cache (the runner mounts), the directories that
// mountCandidates chooses are left empty in dst, to be mounted: the
// result lists the mounts, whose entries stay pinned until release. Those
// not cached yet are built in the same pass, their files fetched and
// checked with the others. A candidate that a written path reaches
// through symlinks is materialized in dst after all.
func (w *worker) materialize(ctx context.Context, cl *casclient.Client, t *inputTree, dst string, wr writes) (*inputs, error) {
	fn := cl.Function()
	sizes := t.subtreeSizes(fn)
	if sizes[t.root].entries > maxInputEntries {
		return nil, status.Errorf(codes.InvalidArgument, "input root %s: more than %d entries", t.root, maxInputEntries)
	}
	var mount map[string]digest.Digest
	if w.dirCache != nil {
		mount = w.mountCandidates(fn, t, sizes, wr)
	}
	jobs, err := layout(fn, t, t.root, dst, "", mount)
	if err != nil {
		return nil, err
	}
	for len(mount) > 0 {
		p := reachedThroughSymlinks(dst, mount, wr)
		if p == "" {
			break
		}
		d := mount[p]
		delete(mount, p)
		more, err := layout(fn, t, d, filepath.Join(dst, filepath.FromSlash(p)), p, mount)
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, more...)
	}

	in := &inputs{}
	type build struct {
		d         digest.Digest
		target    string
		tmp       string
		published bool
	}
	var builds []*build
	done := false
	defer func() {
		if !done {
			for _, b := range builds {
				if !b.published {
					w.dirCache.abandon(b.tmp)
				}
			}
			w.release(in)
		}
	}()
	for _, p := range slices.Sorted(maps.Keys(mount)) {
		d := mount[p]
		if e := w.dirCache.acquire(d); e != nil {
			in.pinned = append(in.pinned, e)
			in.mounts = append(in.mounts, runner.Mount{Source: e.path, Target: p})
			continue
		}
		tmp, err := w.dirCache.newBuild(d)
		if err != nil {
			return nil, err
		}
		builds = append(builds, &build{d: d, target: p, tmp: tmp})
		more, err := layout(fn, t, d, tmp, p, nil)
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, more...)
	}
	if err := w.linkFiles(ctx, cl, t.root, jobs); err != nil {
		return nil, err
	}
	for _, b := range builds {
		b.published = true // by publish, whatever it returns
		e, err := w.dirCache.publish(b.d, b.tmp, sizes[b.d].bytes)
		if err != nil {
			return nil, err
		}
		in.pinned = append(in.pinned, e)
		in.mounts = append(in.mounts, runner.Mount{Source: e.path, Target: b.target})
	}
	done = true
	return in, nil
}

// layout creates below host, an existing empty directory, the
// directories and symlinks of the tree below the directory d (at rel in
// the input root), and returns its files, to be linked. Directories at
// the paths in skip are created empty and not descended into.
func layout(fn digest.Function, t *inputTree, d digest.Digest, host, rel string, skip map[string]digest.Digest) ([]fileJob, error) {
	var jobs []fileJob
	type pending struct {
		d          digest.Digest
		host, path string
	}
	stack := []pending{{d, host, rel}}
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		dir := t.dirs[p.d]
		for _, f := range dir.GetFiles() {
			d, _ := digest.FromProto(fn, f.GetDigest()) // validated
			jobs = append(jobs, fileJob{cacheKey{d, f.GetIsExecutable()}, filepath.Join(p.host, f.GetName())})
		}
		for _, s := range dir.GetSymlinks() {
			if err := os.Symlink(s.GetTarget(), filepath.Join(p.host, s.GetName())); err != nil {
				return nil, inputFSError(err, "symlink", filepath.Join(p.host, s.GetName()))
			}
		}
		for _, sub := range dir.GetDirectories() {
			sh := filepath.Join(p.host, sub.GetName())
			if err := os.Mkdir(sh, 0o755); err != nil {
				return nil, inputFSError(err, "directory", sh)
			}
			sp := path.Join(p.path, sub.GetName())
			if _, ok := skip[sp]; ok {
				continue
			}
			sd, _ := digest.FromProto(fn, sub.GetDigest())
			stack = append(stack, pending{sd, sh, sp})
		}
	}
	return jobs, nil
}

// linkFiles puts the files of jobs in place, hardlinked from the file
// cache, fetching those not cached first. root names the input root in
// errors.
func (w *worker) linkFiles(ctx context.Context, cl *casclient.Client, root digest.Digest, jobs []fileJob) error {
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
		return missingBlobsError("input root "+root.String(), missing)
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
				return missingBlobsError("input root "+root.String(), []digest.Digest{j.key.d})
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
