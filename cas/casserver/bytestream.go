package casserver

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/cas"
	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/internal/rpcstatus"
)

// readChunkSize is the size of the data in each ReadResponse: large enough
// that per-message overhead is small, small enough to stream smoothly.
const readChunkSize = 256 << 10

// ByteStream implements the ByteStream service for the CAS: reads and
// resumable writes of whole blobs, plain or zstd-compressed.
//
// Resumable writes: when a Write stream breaks before finish_write, its
// upload is parked for ResumeWindow with the bytes received so far (they
// are already flowing into the store, which has not committed anything).
// QueryWriteStatus reports them, and a new Write stream for the same
// resource name that continues at that offset picks the upload up. If none
// comes, the upload is abandoned and nothing is stored.
type ByteStream struct {
	bspb.UnimplementedByteStreamServer

	store        cas.BlobStore
	resumeWindow time.Duration

	// ctx ends every parked upload when the service closes; uploads must
	// outlive the stream that started them, so they cannot use its context.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	uploads map[string]*upload // by write resource name; guarded by mu
}

var _ bspb.ByteStreamServer = (*ByteStream)(nil)

// NewByteStream returns the service. store must verify uploads.
// resumeWindow is how long a broken upload waits for its client to resume.
func NewByteStream(store cas.BlobStore, resumeWindow time.Duration) *ByteStream {
	ctx, cancel := context.WithCancel(context.Background())
	return &ByteStream{store: store, resumeWindow: resumeWindow, ctx: ctx, cancel: cancel, uploads: map[string]*upload{}}
}

// Close abandons every parked upload. Handlers still running finish on
// their own; the gRPC server's GracefulStop waits for them.
func (s *ByteStream) Close() { s.cancel() }

// Read streams a blob from read_offset, at most read_limit bytes (0 means
// to the end). For compressed-blobs the offset is in uncompressed bytes and
// read_limit must be 0, as the spec says.
func (s *ByteStream) Read(req *bspb.ReadRequest, stream bspb.ByteStream_ReadServer) error {
	r, err := digest.ParseReadResource(req.GetResourceName())
	if err != nil {
		return err
	}
	d := r.Digest
	off, limit := req.GetReadOffset(), req.GetReadLimit()
	switch {
	case off < 0:
		return status.Errorf(codes.InvalidArgument, "read_offset %d is negative", off)
	case limit < 0:
		return status.Errorf(codes.InvalidArgument, "read_limit %d is negative", limit)
	case off > d.Size():
		return status.Errorf(codes.OutOfRange, "read_offset %d is past the end of blob %s", off, d)
	case r.Compressor != repb.Compressor_IDENTITY && limit != 0:
		return status.Errorf(codes.InvalidArgument, "read_limit must be 0 for compressed-blobs, got %d", limit)
	}
	if limit == 0 || limit > d.Size()-off {
		limit = d.Size() - off
	}
	rc, err := s.store.Get(stream.Context(), d)
	if err != nil {
		return rpcstatus.Wrapf(err, "blob %s", d)
	}
	defer rc.Close()
	if off > 0 {
		if _, err := io.CopyN(io.Discard, rc, off); err != nil {
			return storedBlobError(err, d)
		}
	}
	src := io.LimitReader(rc, limit)
	if r.Compressor == repb.Compressor_IDENTITY {
		return sendChunks(stream, src, d, limit)
	}
	w := &chunkSender{stream: stream}
	enc := newZstdWriter(w)
	defer releaseZstdWriter(enc)
	if _, err := io.Copy(enc, src); err != nil {
		if w.err != nil {
			return w.err
		}
		return storedBlobError(err, d)
	}
	if err := enc.Close(); err != nil {
		return err
	}
	return w.flush()
}

// sendChunks sends want bytes of src in readChunkSize messages, reusing one
// buffer (Send serializes the message before it returns).
func sendChunks(stream bspb.ByteStream_ReadServer, src io.Reader, d digest.Digest, want int64) error {
	buf := make([]byte, min(int64(readChunkSize), max(want, 1)))
	var sent int64
	for {
		n, err := io.ReadFull(src, buf)
		if n > 0 {
			if serr := stream.Send(&bspb.ReadResponse{Data: buf[:n]}); serr != nil {
				return serr
			}
			sent += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return storedBlobError(err, d)
		}
	}
	if sent != want {
		return status.Errorf(codes.Internal, "blob %s: stored blob ended after %d of %d bytes", d, sent, want)
	}
	if want == 0 {
		return stream.Send(&bspb.ReadResponse{})
	}
	return nil
}

func storedBlobError(err error, d digest.Digest) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF {
		return status.Errorf(codes.Internal, "blob %s: stored blob is shorter than its size", d)
	}
	return rpcstatus.Wrapf(err, "blob %s", d)
}

// chunkSender is an io.Writer that sends what the zstd encoder writes as
// ReadResponses of about readChunkSize bytes.
type chunkSender struct {
	stream bspb.ByteStream_ReadServer
	buf    []byte
	err    error
}

func (w *chunkSender) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	if len(w.buf) >= readChunkSize {
		if err := w.flush(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (w *chunkSender) flush() error {
	if w.err != nil || len(w.buf) == 0 {
		return w.err
	}
	w.err = w.stream.Send(&bspb.ReadResponse{Data: w.buf})
	w.buf = w.buf[:0]
	return w.err
}

// upload is a Write in progress: the store's Put pulls from feed, which
// pulls messages from whichever stream currently serves the upload.
type upload struct {
	key  string
	feed *writeFeed
	// resume receives the next stream when the current one breaks.
	resume chan *resumer
}

// resumer is a Write stream that continues a parked upload. done receives
// the upload's final result.
type resumer struct {
	stream bspb.ByteStream_WriteServer
	first  *bspb.WriteRequest
	done   chan error
}

// Write stores a blob sent in a stream of WriteRequests.
func (s *ByteStream) Write(stream bspb.ByteStream_WriteServer) error {
	first, err := stream.Recv()
	if err != nil {
		if err == io.EOF {
			return status.Error(codes.InvalidArgument, "write stream ended before its first message")
		}
		return err
	}
	r, err := digest.ParseWriteResource(first.GetResourceName())
	if err != nil {
		return err
	}
	d := r.Digest
	compressed := r.Compressor != repb.Compressor_IDENTITY
	if first.GetWriteOffset() < 0 {
		return status.Errorf(codes.InvalidArgument, "write_offset %d is negative", first.GetWriteOffset())
	}
	// A blob that is already stored needs no upload: answer at once, as
	// the spec says, with the full size (-1 when compressed).
	missing, err := s.store.FindMissing(stream.Context(), []digest.Digest{d})
	if err != nil {
		return rpcstatus.Wrapf(err, "blob %s", d)
	}
	if len(missing) == 0 {
		committed := d.Size()
		if compressed {
			committed = -1
		}
		return stream.SendAndClose(&bspb.WriteResponse{CommittedSize: committed})
	}
	key := r.WriteName()
	if first.GetWriteOffset() != 0 {
		return s.resumeUpload(key, stream, first)
	}

	feed := &writeFeed{resource: first.GetResourceName(), recv: stream.Recv, pending: first.GetData(), offset: int64(len(first.GetData())), finished: first.GetFinishWrite()}
	if err := feed.checkFirst(first); err != nil {
		return err
	}
	u := &upload{key: key, feed: feed, resume: make(chan *resumer)}
	resumable := !compressed && s.register(u)
	if resumable {
		defer s.unregister(u)
		feed.park = func(cause error) bool { return s.park(u, cause) }
	}

	var src io.Reader = feed
	if compressed {
		dec, err := newZstdReader(feed)
		if err != nil {
			return rpcstatus.Wrapf(err, "blob %s", d)
		}
		defer dec.Close()
		src = dec
	}
	// The store must not see the stream's cancellation: a broken stream
	// parks the upload instead of ending it. s.ctx ends it on Close.
	err = s.store.Put(s.ctx, d, src)
	if err == nil && !feed.finished {
		// The decompressor stopped at the end of its frame while the
		// client had more to send: not a valid upload.
		err = status.Errorf(codes.InvalidArgument, "blob %s: data continues after the end of the compressed stream", d)
	}
	err = rpcstatus.Wrapf(err, "blob %s", d)
	committed := feed.offset
	if feed.current != nil {
		// The upload was resumed on another stream: that stream's handler
		// answers its client; this one's client is gone.
		feed.current.done <- err
		return status.Error(codes.Aborted, "write stream broke; the upload continued on another stream")
	}
	if err != nil {
		return err
	}
	return stream.SendAndClose(&bspb.WriteResponse{CommittedSize: committed})
}

// resumeUpload hands stream to the parked upload key and waits for the
// upload's result.
func (s *ByteStream) resumeUpload(key string, stream bspb.ByteStream_WriteServer, first *bspb.WriteRequest) error {
	s.mu.Lock()
	u := s.uploads[key]
	s.mu.Unlock()
	if u == nil {
		return status.Errorf(codes.InvalidArgument, "write_offset %d for %s, but no upload of it is in progress: start at 0", first.GetWriteOffset(), key)
	}
	res := &resumer{stream: stream, first: first, done: make(chan error, 1)}
	select {
	case u.resume <- res:
	case <-stream.Context().Done():
		return rpcstatus.FromContext(stream.Context())
	default:
		return status.Errorf(codes.InvalidArgument, "write_offset %d for %s, but that upload is still receiving on another stream", first.GetWriteOffset(), key)
	}
	err := <-res.done
	if err != nil {
		return err
	}
	return stream.SendAndClose(&bspb.WriteResponse{CommittedSize: u.feed.offset})
}

// register records u so that it can be resumed and queried. It returns
// false if another upload with the same name is in progress; u then runs
// unregistered (two uploads of one blob are harmless).
func (s *ByteStream) register(u *upload) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.uploads[u.key]; ok {
		return false
	}
	s.uploads[u.key] = u
	return true
}

func (s *ByteStream) unregister(u *upload) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.uploads[u.key] == u {
		delete(s.uploads, u.key)
	}
}

// park waits up to the resume window for a stream that continues u at the
// offset received so far. It returns true if one took over.
func (s *ByteStream) park(u *upload, cause error) bool {
	timer := time.NewTimer(s.resumeWindow)
	defer timer.Stop()
	for {
		select {
		case res := <-u.resume:
			if res.first.GetWriteOffset() != u.feed.offset {
				res.done <- status.Errorf(codes.InvalidArgument, "write_offset %d, but %d bytes of %s were received: resume there", res.first.GetWriteOffset(), u.feed.offset, u.key)
				continue
			}
			if err := u.feed.takeOver(res); err != nil {
				res.done <- err
				continue
			}
			return true
		case <-timer.C:
			return false
		case <-s.ctx.Done():
			return false
		}
	}
}

// QueryWriteStatus reports how much of an upload was received. A stored
// blob is complete; an upload nobody has started reports 0.
func (s *ByteStream) QueryWriteStatus(ctx context.Context, req *bspb.QueryWriteStatusRequest) (*bspb.QueryWriteStatusResponse, error) {
	r, err := digest.ParseWriteResource(req.GetResourceName())
	if err != nil {
		return nil, err
	}
	missing, err := s.store.FindMissing(ctx, []digest.Digest{r.Digest})
	if err != nil {
		return nil, rpcstatus.Wrapf(err, "blob %s", r.Digest)
	}
	if len(missing) == 0 {
		return &bspb.QueryWriteStatusResponse{CommittedSize: r.Digest.Size(), Complete: true}, nil
	}
	s.mu.Lock()
	u := s.uploads[r.WriteName()]
	s.mu.Unlock()
	if u == nil {
		return &bspb.QueryWriteStatusResponse{}, nil
	}
	return &bspb.QueryWriteStatusResponse{CommittedSize: u.feed.received()}, nil
}

// writeFeed is the io.Reader a Put pulls an upload from. It checks every
// message's offset and resource name, and hands over to a resuming stream
// when its current one breaks. Only the Put's goroutine calls Read;
// received may be called from anywhere.
type writeFeed struct {
	resource string
	recv     func() (*bspb.WriteRequest, error)
	pending  []byte
	offset   int64 // protocol offset after the last message received
	finished bool
	// park is called when the stream breaks; nil means not resumable.
	park func(cause error) bool
	// current is the resumer now feeding the upload, nil for the original.
	current *resumer

	receivedBytes atomic.Int64 // mirror of offset for QueryWriteStatus
}

func (f *writeFeed) received() int64 { return f.receivedBytes.Load() }

func (f *writeFeed) checkFirst(req *bspb.WriteRequest) error {
	if req.GetWriteOffset() != 0 {
		return status.Errorf(codes.InvalidArgument, "write_offset %d for a new upload: start at 0", req.GetWriteOffset())
	}
	f.receivedBytes.Store(f.offset)
	return nil
}

func (f *writeFeed) Read(p []byte) (int, error) {
	for len(f.pending) == 0 {
		if f.finished {
			return 0, io.EOF
		}
		req, err := f.recv()
		if err != nil {
			if err == io.EOF {
				err = status.Errorf(codes.InvalidArgument, "write stream for %s ended after %d bytes without finish_write", f.resource, f.offset)
			}
			if f.park != nil && f.park(err) {
				continue
			}
			return 0, rpcstatus.WrapWithCode(err, codes.Aborted, "upload abandoned after %d bytes", f.offset)
		}
		if err := f.accept(req); err != nil {
			return 0, err
		}
	}
	n := copy(p, f.pending)
	f.pending = f.pending[n:]
	return n, nil
}

// accept checks one message of the stream and queues its data.
func (f *writeFeed) accept(req *bspb.WriteRequest) error {
	if name := req.GetResourceName(); name != "" && name != f.resource {
		return status.Errorf(codes.InvalidArgument, "resource_name changed within a write stream, from %q to %q", f.resource, name)
	}
	if req.GetWriteOffset() != f.offset {
		return status.Errorf(codes.InvalidArgument, "write_offset %d, want %d", req.GetWriteOffset(), f.offset)
	}
	f.pending = req.GetData()
	f.offset += int64(len(req.GetData()))
	f.finished = req.GetFinishWrite()
	f.receivedBytes.Store(f.offset)
	return nil
}

// takeOver switches the feed to a resuming stream.
func (f *writeFeed) takeOver(res *resumer) error {
	if err := f.accept(res.first); err != nil {
		return err
	}
	if f.current != nil {
		// The previous resumer broke too; its handler is waiting.
		f.current.done <- status.Error(codes.Aborted, "write stream broke; the upload continued on another stream")
	}
	f.current = res
	f.recv = res.stream.Recv
	return nil
}
