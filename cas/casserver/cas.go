// Package casserver implements the REAPI storage services over a
// cas.BlobStore: Capabilities, ContentAddressableStorage and ByteStream.
//
// Every request is validated here, at the edge: instance names, digest
// functions, digests and resource names are parsed into digest values
// before anything reaches a store.
package casserver

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"runtime"
	"strconv"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kiln-build/kiln/cas"
	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/internal/rpcstatus"
)

// CAS implements the ContentAddressableStorage service. Blobs are shared by
// all instance names: the content decides the key, so sharing is safe and
// lets projects reuse each other's toolchains.
type CAS struct {
	repb.UnimplementedContentAddressableStorageServer

	store         cas.BlobStore
	maxBatchBytes int64
}

var _ repb.ContentAddressableStorageServer = (*CAS)(nil)

// NewCAS returns the service. store must verify uploads (see
// cas.NewVerifyingStore); maxBatchBytes is the total size of blobs allowed
// in one batch request, as announced in Capabilities.
func NewCAS(store cas.BlobStore, maxBatchBytes int64) *CAS {
	return &CAS{store: store, maxBatchBytes: maxBatchBytes}
}

// requestFunction validates the instance name and digest function common
// to every request.
func requestFunction(instance string, fn repb.DigestFunction_Value) (digest.Function, error) {
	if err := digest.ValidateInstanceName(instance); err != nil {
		return nil, err
	}
	return digest.FunctionFromEnum(fn)
}

// FindMissingBlobs returns the digests that are not stored.
func (s *CAS) FindMissingBlobs(ctx context.Context, req *repb.FindMissingBlobsRequest) (*repb.FindMissingBlobsResponse, error) {
	fn, err := requestFunction(req.GetInstanceName(), req.GetDigestFunction())
	if err != nil {
		return nil, err
	}
	ds := make([]digest.Digest, 0, len(req.GetBlobDigests()))
	for i, pb := range req.GetBlobDigests() {
		d, err := digest.FromProto(fn, pb)
		if err != nil {
			return nil, rpcstatus.Wrapf(err, "blob_digests[%d]", i)
		}
		ds = append(ds, d)
	}
	missing, err := s.store.FindMissing(ctx, ds)
	if err != nil {
		return nil, rpcstatus.Wrap(err, "find missing blobs")
	}
	resp := &repb.FindMissingBlobsResponse{MissingBlobDigests: make([]*repb.Digest, 0, len(missing))}
	seen := make(map[digest.Digest]bool, len(missing))
	for _, d := range missing {
		if !seen[d] {
			seen[d] = true
			resp.MissingBlobDigests = append(resp.MissingBlobDigests, d.Proto())
		}
	}
	return resp, nil
}

// BatchUpdateBlobs stores small blobs, each verified against its digest,
// in parallel on all cores. A bad blob fails alone, in its own status.
func (s *CAS) BatchUpdateBlobs(ctx context.Context, req *repb.BatchUpdateBlobsRequest) (*repb.BatchUpdateBlobsResponse, error) {
	fn, err := requestFunction(req.GetInstanceName(), req.GetDigestFunction())
	if err != nil {
		return nil, err
	}
	var total int64
	for _, r := range req.GetRequests() {
		total += int64(len(r.GetData()))
	}
	if total > s.maxBatchBytes {
		return nil, status.Errorf(codes.InvalidArgument, "batch holds %d bytes, more than the limit of %d: use ByteStream for large blobs", total, s.maxBatchBytes)
	}
	resp := &repb.BatchUpdateBlobsResponse{Responses: make([]*repb.BatchUpdateBlobsResponse_Response, len(req.GetRequests()))}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i, r := range req.GetRequests() {
		resp.Responses[i] = &repb.BatchUpdateBlobsResponse_Response{Digest: r.GetDigest()}
		g.Go(func() error {
			resp.Responses[i].Status = status.Convert(s.updateOne(gctx, fn, r)).Proto()
			return nil
		})
	}
	g.Wait() // each goroutine reports into its own slot and never fails the group
	return resp, nil
}

func (s *CAS) updateOne(ctx context.Context, fn digest.Function, r *repb.BatchUpdateBlobsRequest_Request) error {
	d, err := digest.FromProto(fn, r.GetDigest())
	if err != nil {
		return err
	}
	var src io.Reader = bytes.NewReader(r.GetData())
	switch r.GetCompressor() {
	case repb.Compressor_IDENTITY:
	case repb.Compressor_ZSTD:
		dec, err := newZstdReader(src)
		if err != nil {
			return rpcstatus.Wrapf(err, "blob %s", d)
		}
		defer dec.Close()
		src = dec
	default:
		return status.Errorf(codes.InvalidArgument, "blob %s: compressor %s is not supported", d, r.GetCompressor())
	}
	if err := s.store.Put(ctx, d, src); err != nil {
		return rpcstatus.Wrapf(err, "blob %s", d)
	}
	return nil
}

// BatchReadBlobs returns small blobs; a missing one is NotFound in its own
// status. Blobs are returned uncompressed, which every client accepts.
func (s *CAS) BatchReadBlobs(ctx context.Context, req *repb.BatchReadBlobsRequest) (*repb.BatchReadBlobsResponse, error) {
	fn, err := requestFunction(req.GetInstanceName(), req.GetDigestFunction())
	if err != nil {
		return nil, err
	}
	ds := make([]digest.Digest, len(req.GetDigests()))
	var total int64
	for i, pb := range req.GetDigests() {
		d, err := digest.FromProto(fn, pb)
		if err != nil {
			return nil, rpcstatus.Wrapf(err, "digests[%d]", i)
		}
		ds[i] = d
		total += d.Size()
	}
	if total > s.maxBatchBytes {
		return nil, status.Errorf(codes.InvalidArgument, "batch asks for %d bytes, more than the limit of %d: use ByteStream for large blobs", total, s.maxBatchBytes)
	}
	resp := &repb.BatchReadBlobsResponse{Responses: make([]*repb.BatchReadBlobsResponse_Response, len(ds))}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i, d := range ds {
		r := &repb.BatchReadBlobsResponse_Response{Digest: req.GetDigests()[i], Compressor: repb.Compressor_IDENTITY}
		resp.Responses[i] = r
		g.Go(func() error {
			data, err := ReadBlob(gctx, s.store, d)
			r.Data = data
			r.Status = status.Convert(rpcstatus.Wrapf(err, "blob %s", d)).Proto()
			return nil
		})
	}
	g.Wait() // each goroutine reports into its own slot and never fails the group
	return resp, nil
}

// ReadBlob reads a whole blob into memory. A stored blob whose length is not
// its digest's size is corrupt: Internal.
func ReadBlob(ctx context.Context, store cas.BlobStore, d digest.Digest) ([]byte, error) {
	rc, err := store.Get(ctx, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	buf := make([]byte, d.Size())
	if _, err := io.ReadFull(rc, buf); err != nil {
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			return nil, status.Errorf(codes.Internal, "stored blob is shorter than %d bytes", d.Size())
		}
		return nil, err
	}
	var one [1]byte
	if n, err := rc.Read(one[:]); n > 0 {
		return nil, status.Errorf(codes.Internal, "stored blob is longer than %d bytes", d.Size())
	} else if err != nil && err != io.EOF {
		return nil, err
	}
	return buf, nil
}

// ReadProto reads a blob and unmarshals it into m. Bytes that do not parse
// are InvalidArgument: the client uploaded something that is not m.
func ReadProto(ctx context.Context, store cas.BlobStore, d digest.Digest, m proto.Message) error {
	data, err := ReadBlob(ctx, store, d)
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(data, m); err != nil {
		return status.Errorf(codes.InvalidArgument, "blob %s is not a valid %s: %v", d, m.ProtoReflect().Descriptor().Name(), err)
	}
	return nil
}

// Tree paging limits: a page never holds more directories than this, so a
// response stays far below the gRPC message limit.
const (
	defaultTreePageSize = 1000
	maxTreePageSize     = 10000
)

// GetTree streams the directories below root in breadth-first order, each
// once, in pages of page_size. Every page but the last carries a
// next_page_token, which is an offset into that order. Parts of the tree
// missing from the CAS are left out, as the spec allows; a missing root is
// NotFound.
func (s *CAS) GetTree(req *repb.GetTreeRequest, stream repb.ContentAddressableStorage_GetTreeServer) error {
	ctx := stream.Context()
	fn, err := requestFunction(req.GetInstanceName(), req.GetDigestFunction())
	if err != nil {
		return err
	}
	root, err := digest.FromProto(fn, req.GetRootDigest())
	if err != nil {
		return rpcstatus.Wrap(err, "root_digest")
	}
	pageSize := int(req.GetPageSize())
	switch {
	case pageSize < 0:
		return status.Errorf(codes.InvalidArgument, "page_size %d is negative", pageSize)
	case pageSize == 0:
		pageSize = defaultTreePageSize
	case pageSize > maxTreePageSize:
		pageSize = maxTreePageSize
	}
	offset, err := parsePageToken(req.GetPageToken())
	if err != nil {
		return err
	}
	rootDir := &repb.Directory{}
	if err := ReadProto(ctx, s.store, root, rootDir); err != nil {
		return rpcstatus.Wrapf(err, "root directory %s", root)
	}
	// Walk breadth first. Directories before offset were sent in earlier
	// pages; they are still read, because their children come after them.
	seen := map[digest.Digest]bool{root: true}
	queue := []*repb.Directory{rootDir}
	page := &repb.GetTreeResponse{}
	pos := 0
	for ; len(queue) > 0; pos++ {
		dir := queue[0]
		queue = queue[1:]
		for _, child := range dir.GetDirectories() {
			cd, err := digest.FromProto(fn, child.GetDigest())
			if err != nil {
				return rpcstatus.WrapWithCode(err, codes.InvalidArgument, "directory %q in tree %s", child.GetName(), root)
			}
			if seen[cd] {
				continue
			}
			seen[cd] = true
			sub := &repb.Directory{}
			if err := ReadProto(ctx, s.store, cd, sub); err != nil {
				if rpcstatus.IsNotFound(err) {
					continue
				}
				return rpcstatus.Wrapf(err, "directory %q in tree %s", child.GetName(), root)
			}
			queue = append(queue, sub)
		}
		if pos < offset {
			continue
		}
		page.Directories = append(page.Directories, dir)
		if len(page.Directories) == pageSize && len(queue) > 0 {
			page.NextPageToken = makePageToken(pos + 1)
			if err := stream.Send(page); err != nil {
				return err
			}
			page = &repb.GetTreeResponse{}
		}
	}
	if offset >= pos {
		return status.Errorf(codes.InvalidArgument, "page_token points past the end of tree %s", root)
	}
	return stream.Send(page)
}

func makePageToken(offset int) string {
	return base64.RawURLEncoding.EncodeToString([]byte("o" + strconv.Itoa(offset)))
}

func parsePageToken(tok string) (int, error) {
	if tok == "" {
		return 0, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err == nil && len(raw) > 1 && raw[0] == 'o' {
		if n, err := strconv.Atoi(string(raw[1:])); err == nil && n > 0 && string(raw[1:]) == fmt.Sprint(n) {
			return n, nil
		}
	}
	return 0, status.Errorf(codes.InvalidArgument, "page_token %q was not issued by this server", tok)
}
