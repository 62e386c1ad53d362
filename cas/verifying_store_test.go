package cas_test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/kiln-build/kiln/cas"
	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/cas/memory"
	"github.com/kiln-build/kiln/cas/storetest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestVerifyingStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, capacity int) cas.BlobStore {
		return cas.NewVerifyingStore(memory.New(int64(capacity) * storetest.BlobSize))
	}, storetest.ContentAddressedOnly())
}

func TestVerifyingStorePut(t *testing.T) {
	data := []byte("hello, kiln")
	good := digest.FromBytes(digest.SHA256, data)
	other := digest.FromBytes(digest.SHA256, []byte("hello, kilN"))
	otherHash := other.Hash()
	b3 := digest.FromBytes(digest.BLAKE3, data)
	boom := status.Error(codes.Unavailable, "stream broke")
	tests := []struct {
		name    string
		d       digest.Digest
		r       io.Reader
		wantErr error // nil: stored
	}{
		{
			name: "Matches",
			// Correct content is stored.
			d: good, r: bytes.NewReader(data),
		},
		{
			name: "MatchesBLAKE3",
			// The digest's own function is used.
			d: b3, r: bytes.NewReader(data),
		},
		{
			name: "EmptyBlob",
			// Zero bytes hash to the empty digest.
			d: digest.Empty(digest.SHA256), r: bytes.NewReader(nil),
		},
		{
			name: "WrongHash",
			// Same length, different bytes.
			d: good, r: bytes.NewReader([]byte("hello, kilN")),
			wantErr: status.Errorf(codes.InvalidArgument, "data for blob %s/11 hashes to %s", good.Hash(), otherHash),
		},
		{
			name: "TooShort",
			// Fewer bytes than the digest's size.
			d: good, r: bytes.NewReader(data[:5]),
			wantErr: status.Errorf(codes.InvalidArgument, "data for blob %s/11 has 5 bytes, want 11", good.Hash()),
		},
		{
			name: "TooLong",
			// One byte too many fails before EOF.
			d: good, r: bytes.NewReader(append(bytes.Clone(data), '!')),
			wantErr: status.Errorf(codes.InvalidArgument, "data for blob %s/11 has at least 12 bytes, want 11", good.Hash()),
		},
		{
			name: "ReaderError",
			// The uploader's own error passes through unchanged.
			d: good, r: storetest.ErrReaderAfter(data, 3, boom),
			wantErr: boom,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			base := memory.New(1 << 20)
			s := cas.NewVerifyingStore(base)
			err := s.Put(ctx, tc.d, tc.r)
			requireEqualStatus(t, tc.wantErr, err)
			missing, _ := base.FindMissing(ctx, []digest.Digest{tc.d})
			if stored := len(missing) == 0; stored != (tc.wantErr == nil) {
				t.Fatalf("stored = %v after Put error %v", stored, err)
			}
		})
	}
}

func TestVerifyingStoreStopsEndlessStream(t *testing.T) {
	// An upload longer than its digest fails as soon as it passes the size,
	// not after reading (or buffering) the whole stream.
	d := digest.FromBytes(digest.SHA256, make([]byte, 1000))
	r := &countingZeroReader{}
	err := cas.NewVerifyingStore(memory.New(1<<30)).Put(context.Background(), d, r)
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Put of endless stream = %v, want InvalidArgument", err)
	}
	if r.n > 1000+64<<10 {
		t.Fatalf("read %d bytes of an endless stream for a 1000-byte blob", r.n)
	}
}

// countingZeroReader is an endless stream of zeros that counts what it gave.
type countingZeroReader struct{ n int }

func (r *countingZeroReader) Read(p []byte) (int, error) {
	p = p[:min(len(p), 4096)]
	clear(p)
	r.n += len(p)
	return len(p), nil
}

func requireEqualStatus(t *testing.T, want, got error) {
	t.Helper()
	if want == nil || got == nil {
		if want != got {
			t.Fatalf("error = %v, want %v", got, want)
		}
		return
	}
	ws, gs := status.Convert(want), status.Convert(got)
	if ws.Code() != gs.Code() || ws.Message() != gs.Message() {
		t.Fatalf("error = %v, want %v", got, want)
	}
}
