package casserver

import (
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// zstdReader decompresses a zstd stream. Decompression errors are
// InvalidArgument: the client sent bytes that are not zstd. It never
// produces more than the verifying store lets through, so a decompression
// bomb fails as soon as it passes the blob's declared size.
type zstdReader struct {
	dec *zstd.Decoder
}

var decoderPool sync.Pool // of *zstd.Decoder, reset before each use

func newZstdReader(r io.Reader) (*zstdReader, error) {
	dec, _ := decoderPool.Get().(*zstd.Decoder)
	if dec == nil {
		var err error
		dec, err = zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		if err != nil {
			return nil, status.Errorf(codes.Internal, "zstd decoder: %v", err)
		}
		return &zstdReader{dec: dec}, nil
	}
	if err := dec.Reset(r); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "zstd stream: %v", err)
	}
	return &zstdReader{dec: dec}, nil
}

func (z *zstdReader) Read(p []byte) (int, error) {
	n, err := z.dec.Read(p)
	if err != nil && err != io.EOF {
		if _, ok := status.FromError(err); !ok {
			err = status.Errorf(codes.InvalidArgument, "zstd stream: %v", err)
		}
	}
	return n, err
}

// Close returns the decoder to the pool.
func (z *zstdReader) Close() {
	if z.dec == nil {
		return
	}
	z.dec.Reset(nil)
	decoderPool.Put(z.dec)
	z.dec = nil
}

var encoderPool sync.Pool // of *zstd.Encoder

// newZstdWriter returns an encoder writing to w at the fastest level: the
// point of compressed reads is to save network, not to spend the CPU that
// serves other clients.
func newZstdWriter(w io.Writer) *zstd.Encoder {
	if enc, _ := encoderPool.Get().(*zstd.Encoder); enc != nil {
		enc.Reset(w)
		return enc
	}
	enc, _ := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
	return enc
}

func releaseZstdWriter(enc *zstd.Encoder) {
	enc.Reset(nil)
	encoderPool.Put(enc)
}
