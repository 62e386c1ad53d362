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

func TestSizeLimitStorePut(t *testing.T) {
	const limit = 100
	atLimit, atLimitData := storetest.Blob(1, limit)
	over, overData := storetest.Blob(2, limit+1)
	small, _ := storetest.Blob(3, 10)
	tests := []struct {
		name    string
		d       digest.Digest
		r       io.Reader
		wantErr error
	}{
		{
			name: "AtLimit",
			// A blob exactly at the limit is stored.
			d: atLimit, r: bytes.NewReader(atLimitData),
		},
		{
			name: "DigestOverLimit",
			// Rejected from the digest alone: the reader must not be touched.
			d: over, r: panicReader{},
			wantErr: status.Errorf(codes.InvalidArgument, "blob %s/101 is larger than the limit of 100 bytes", over.Hash()),
		},
		{
			name: "ContentOverLimit",
			// Action-cache style: a small key size but content past the limit.
			d: small, r: bytes.NewReader(overData),
			wantErr: status.Errorf(codes.InvalidArgument, "data for blob %s/10 is larger than the limit of 100 bytes", small.Hash()),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			base := memory.New(1 << 20)
			err := cas.NewSizeLimitStore(base, limit).Put(ctx, tc.d, tc.r)
			requireEqualStatus(t, tc.wantErr, err)
			missing, _ := base.FindMissing(ctx, []digest.Digest{tc.d})
			if stored := len(missing) == 0; stored != (tc.wantErr == nil) {
				t.Fatalf("stored = %v after Put error %v", stored, err)
			}
		})
	}
}

func TestSizeLimitStorePassesThrough(t *testing.T) {
	// Get and FindMissing reach the base store.
	base := memory.New(1 << 20)
	d, data := storetest.Blob(1, 50)
	storetest.PutBytes(t, base, d, data)
	s := cas.NewSizeLimitStore(base, 10)
	storetest.RequireContent(t, s, d, data)
	storetest.RequireMissing(t, s, []digest.Digest{d}, nil)
}

type panicReader struct{}

func (panicReader) Read([]byte) (int, error) { panic("read a blob that should have been rejected") }
