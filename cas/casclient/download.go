package casclient

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/internal/rpcstatus"
)

// ReadBlob reads a whole blob into memory: with BatchReadBlobs when it is
// small, ByteStream otherwise. A missing blob is NotFound; data that does
// not match d is Internal.
func (c *Client) ReadBlob(ctx context.Context, d digest.Digest) ([]byte, error) {
	if err := c.checkFunction(d); err != nil {
		return nil, err
	}
	if d.IsEmpty() {
		return []byte{}, nil
	}
	if d.Size() <= c.maxSmall {
		m, missing, err := c.batchRead(ctx, []digest.Digest{d})
		if err != nil {
			return nil, err
		}
		if len(missing) > 0 {
			return nil, status.Errorf(codes.NotFound, "read blob %s: not found", d)
		}
		return m[d], nil
	}
	var buf bytes.Buffer
	buf.Grow(int(d.Size()))
	if err := c.readStream(ctx, d, &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// BatchRead reads blobs into memory, each digest once: small ones packed
// into BatchReadBlobs requests up to the batch limit, large ones with
// ByteStream. The map holds every blob found. If some are missing, the
// error is NotFound and names them; the map still holds the others, so a
// caller can tell exactly which are absent. Other errors stop the reads.
func (c *Client) BatchRead(ctx context.Context, ds []digest.Digest) (map[digest.Digest][]byte, error) {
	out := make(map[digest.Digest][]byte, len(ds))
	var small, large []digest.Digest
	for _, d := range ds {
		if err := c.checkFunction(d); err != nil {
			return nil, err
		}
		if _, ok := out[d]; ok {
			continue
		}
		out[d] = nil // placeholder for dedup; replaced or deleted below
		switch {
		case d.IsEmpty():
			out[d] = []byte{}
		case d.Size() <= c.maxSmall:
			small = append(small, d)
		default:
			large = append(large, d)
		}
	}
	var mu sync.Mutex // guards out and missing
	var missing []digest.Digest
	g, gctx := newGroup(ctx)
	for _, sp := range c.pack(len(small), func(i int) int64 { return small[i].Size() }) {
		g.Go(func() error {
			m, miss, err := c.batchRead(gctx, small[sp.start:sp.end])
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			for d, data := range m {
				out[d] = data
			}
			missing = append(missing, miss...)
			return nil
		})
	}
	for _, d := range large {
		g.Go(func() error {
			var buf bytes.Buffer
			buf.Grow(int(d.Size()))
			err := c.readStream(gctx, d, &buf)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case rpcstatus.IsNotFound(err):
				missing = append(missing, d)
			case err != nil:
				return err
			default:
				out[d] = buf.Bytes()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for _, d := range missing {
		delete(out, d)
	}
	if len(missing) > 0 {
		return out, missingError(ds, missing)
	}
	return out, nil
}

// missingError is NotFound naming the first missing blob in the caller's
// order and how many more there are.
func missingError(ds, missing []digest.Digest) error {
	gone := make(map[digest.Digest]bool, len(missing))
	for _, d := range missing {
		gone[d] = true
	}
	for _, d := range ds {
		if gone[d] {
			if len(gone) == 1 {
				return status.Errorf(codes.NotFound, "read blob %s: not found", d)
			}
			return status.Errorf(codes.NotFound, "read blob %s: not found (and %d more blobs)", d, len(gone)-1)
		}
	}
	panic("missing blob not among the requested ones")
}

// batchRead reads ds (each small, no repeats) in one BatchReadBlobs request
// and verifies each blob. It returns the blobs found and the missing ones;
// any other failure is the error.
func (c *Client) batchRead(ctx context.Context, ds []digest.Digest) (map[digest.Digest][]byte, []digest.Digest, error) {
	req := &repb.BatchReadBlobsRequest{
		InstanceName:   c.instance,
		Digests:        make([]*repb.Digest, len(ds)),
		DigestFunction: c.fn.Enum(),
	}
	want := make(map[digest.Digest]bool, len(ds))
	for i, d := range ds {
		req.Digests[i] = d.Proto()
		want[d] = true
	}
	resp, err := c.cas.BatchReadBlobs(ctx, req)
	if err != nil {
		return nil, nil, rpcstatus.Wrapf(err, "read %d blobs (first %s)", len(ds), ds[0])
	}
	found := make(map[digest.Digest][]byte, len(ds))
	var missing []digest.Digest
	for _, r := range resp.GetResponses() {
		d, err := digest.FromProto(c.fn, r.GetDigest())
		if err != nil || !want[d] {
			return nil, nil, status.Errorf(codes.Internal, "read %d blobs (first %s): server answered for a blob not asked for: %v", len(ds), ds[0], r.GetDigest())
		}
		delete(want, d)
		switch code := codes.Code(r.GetStatus().GetCode()); code {
		case codes.OK:
		case codes.NotFound:
			missing = append(missing, d)
			continue
		default:
			return nil, nil, rpcstatus.Wrapf(status.ErrorProto(r.GetStatus()), "read blob %s", d)
		}
		if r.GetCompressor() != repb.Compressor_IDENTITY {
			return nil, nil, status.Errorf(codes.Internal, "read blob %s: server sent it compressed with %s, which was not asked for", d, r.GetCompressor())
		}
		if err := verify(d, r.GetData()); err != nil {
			return nil, nil, err
		}
		found[d] = r.GetData()
	}
	if len(want) > 0 {
		return nil, nil, status.Errorf(codes.Internal, "read %d blobs (first %s): server left %d out of its answer", len(ds), ds[0], len(want))
	}
	return found, missing, nil
}

// verify checks that data hashes to d.
func verify(d digest.Digest, data []byte) error {
	if got := digest.FromBytes(d.Function(), data); got != d {
		return status.Errorf(codes.Internal, "read blob %s: received data is %s", d, got)
	}
	return nil
}

// readStream reads d with ByteStream into w, hashing on the way. It fails
// with Internal if the data does not match d; w has then seen bad bytes,
// so callers write to something they can discard.
func (c *Client) readStream(ctx context.Context, d digest.Digest, w io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream if we stop reading early
	res := digest.Resource{Instance: c.instance, Compressor: repb.Compressor_IDENTITY, Digest: d}
	stream, err := c.bs.Read(ctx, &bspb.ReadRequest{ResourceName: res.ReadName()})
	if err != nil {
		return rpcstatus.Wrapf(err, "read blob %s", d)
	}
	h := d.Function().New()
	var n int64
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return rpcstatus.Wrapf(err, "read blob %s", d)
		}
		data := resp.GetData()
		n += int64(len(data))
		if n > d.Size() {
			return status.Errorf(codes.Internal, "read blob %s: server sent more than %d bytes", d, d.Size())
		}
		h.Write(data)
		if _, err := w.Write(data); err != nil {
			return status.Errorf(codes.Internal, "read blob %s: %v", d, err)
		}
	}
	if n != d.Size() {
		return status.Errorf(codes.Internal, "read blob %s: server sent %d bytes", d, n)
	}
	if got := digest.FromHash(d.Function(), h.Sum(nil), n); got != d {
		return status.Errorf(codes.Internal, "read blob %s: received data is %s", d, got)
	}
	return nil
}

// DownloadToFile writes blob d to path with ByteStream, hashing while it
// writes into a temporary file next to path, and renames that into place
// only once the digest matches: path never holds partial or wrong data. The
// file gets mode 0755 when executable, else 0644, regardless of the umask.
// An existing file at path is replaced.
func (c *Client) DownloadToFile(ctx context.Context, d digest.Digest, path string, executable bool) (err error) {
	if err := c.checkFunction(d); err != nil {
		return err
	}
	mode := os.FileMode(0o644)
	if executable {
		mode = 0o755
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return status.Errorf(codes.Internal, "download blob %s: %v", d, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if !d.IsEmpty() {
		if err := c.readStream(ctx, d, f); err != nil {
			return rpcstatus.Wrapf(err, "download to %s", path)
		}
	}
	if err := f.Chmod(mode); err != nil {
		return status.Errorf(codes.Internal, "download blob %s: %v", d, err)
	}
	if err := f.Close(); err != nil {
		return status.Errorf(codes.Internal, "download blob %s: %v", d, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return status.Errorf(codes.Internal, "download blob %s: %v", d, err)
	}
	return nil
}

// GetTree returns every Directory below root (root included) as the
// server's GetTree sends them, following page tokens. Servers leave out
// subtrees they lack, so callers must check that what they need is there.
func (c *Client) GetTree(ctx context.Context, root digest.Digest) ([]*repb.Directory, error) {
	if err := c.checkFunction(root); err != nil {
		return nil, err
	}
	var dirs []*repb.Directory
	token := ""
	for {
		next, err := c.getTreePage(ctx, root, token, &dirs)
		if err != nil {
			return nil, err
		}
		if next == "" {
			return dirs, nil
		}
		if next == token {
			return nil, status.Errorf(codes.Internal, "get tree %s: server repeated page token %q", root, token)
		}
		token = next
	}
}

// getTreePage runs one GetTree stream from token, appending directories to
// dirs, and returns the page token of the last response ("" at the end).
func (c *Client) getTreePage(ctx context.Context, root digest.Digest, token string, dirs *[]*repb.Directory) (string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.cas.GetTree(ctx, &repb.GetTreeRequest{
		InstanceName:   c.instance,
		RootDigest:     root.Proto(),
		PageToken:      token,
		DigestFunction: c.fn.Enum(),
	})
	if err != nil {
		return "", rpcstatus.Wrapf(err, "get tree %s", root)
	}
	next := ""
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return next, nil
		}
		if err != nil {
			return "", rpcstatus.Wrapf(err, "get tree %s", root)
		}
		*dirs = append(*dirs, resp.GetDirectories()...)
		next = resp.GetNextPageToken()
	}
}

// FileBlob reads the file at path once, hashing it, and returns it as a
// Blob to upload: with its content in Data when it has at most maxData
// bytes, else by Path, to be read again when it is sent. A symlink at path
// is not followed: that is an Internal error. Data holds exactly the bytes
// that were hashed, whatever happens to the file afterwards.
func FileBlob(fn digest.Function, path string, maxData int64) (Blob, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return Blob{}, fileError(err, "digest %s", path)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Blob{}, status.Errorf(codes.Internal, "digest %s: %v", path, err)
	}
	h := fn.New()
	var data []byte
	if fi.Size() <= maxData {
		// Up to one byte more than maxData: more means it grew meanwhile.
		buf := bytes.NewBuffer(make([]byte, 0, fi.Size()+bytes.MinRead))
		if _, err := buf.ReadFrom(io.LimitReader(f, maxData+1)); err != nil {
			return Blob{}, status.Errorf(codes.Internal, "digest %s: %v", path, err)
		}
		data = buf.Bytes()
		if int64(len(data)) <= maxData {
			return Blob{Digest: digest.FromBytes(fn, data), Data: data}, nil
		}
		h.Write(data) // too large after all: hash the rest from the file
	}
	n, err := io.Copy(h, f)
	if err != nil {
		return Blob{}, status.Errorf(codes.Internal, "digest %s: %v", path, err)
	}
	return Blob{Digest: digest.FromHash(fn, h.Sum(nil), int64(len(data))+n), Path: path}, nil
}

// DigestFile hashes the file at path with fn.
func DigestFile(fn digest.Function, path string) (digest.Digest, error) {
	f, err := os.Open(path)
	if err != nil {
		return digest.Digest{}, fileError(err, "digest %s", path)
	}
	defer f.Close()
	return DigestReader(fn, f)
}

// DigestReader hashes everything r returns until io.EOF.
func DigestReader(fn digest.Function, r io.Reader) (digest.Digest, error) {
	h := fn.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return digest.Digest{}, status.Errorf(codes.Internal, "digest: %v", err)
	}
	return digest.FromHash(fn, h.Sum(nil), n), nil
}
