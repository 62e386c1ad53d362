package test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"syscall"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/google/uuid"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/internal/grpcaddr"
)

// TestDiskFull runs the real server on a 3 MiB tmpfs: uploads fail with
// RESOURCE_EXHAUSTED once it is full, nothing half-written is left behind,
// and every blob stored before stays readable.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=3m"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	srv := startServer(t, "--data", dir, "--workers", "0")
	conn, err := grpcaddr.Dial(srv.GRPCAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	casc := repb.NewContentAddressableStorageClient(conn)
	bs := bspb.NewByteStreamClient(conn)

	write := func(data []byte) (*repb.Digest, error) {
		sum := sha256.Sum256(data)
		d := &repb.Digest{Hash: hex.EncodeToString(sum[:]), SizeBytes: int64(len(data))}
		stream, err := bs.Write(ctx)
		if err != nil {
			return d, err
		}
		name := "uploads/" + uuid.NewString() + "/blobs/" + d.Hash + "/" + itoa(d.SizeBytes)
		if err := stream.Send(&bspb.WriteRequest{ResourceName: name, Data: data, FinishWrite: true}); err != nil {
			_, err = stream.CloseAndRecv()
			return d, err
		}
		_, err = stream.CloseAndRecv()
		return d, err
	}
	var stored [][]byte
	var storedDigests []*repb.Digest
	var full error
	for i := 0; i < 40 && full == nil; i++ {
		data := make([]byte, 200<<10) // above the write-back limit: written through
		rand.Read(data)
		d, err := write(data)
		if err != nil {
			full = err
			if status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("upload %d: %v, want RESOURCE_EXHAUSTED", i, err)
			}
			break
		}
		stored = append(stored, data)
		storedDigests = append(storedDigests, d)
	}
	if full == nil || len(stored) == 0 {
		t.Fatalf("the 3 MiB disk never filled (%d blobs stored)", len(stored))
	}
	t.Logf("full after %d blobs: %v", len(stored), full)

	// Small blobs go through the write-back buffer: at most the first is
	// acknowledged and then lost; after that they are refused too.
	var refused bool
	for i := 0; i < 50 && !refused; i++ {
		data := make([]byte, 8<<10)
		rand.Read(data)
		sum := sha256.Sum256(data)
		d := &repb.Digest{Hash: hex.EncodeToString(sum[:]), SizeBytes: int64(len(data))}
		resp, err := casc.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: d, Data: data}}})
		if err != nil {
			t.Fatal(err)
		}
		refused = codes.Code(resp.GetResponses()[0].GetStatus().GetCode()) == codes.ResourceExhausted
		time.Sleep(20 * time.Millisecond) // let the background write fail
	}
	if !refused {
		t.Fatal("small uploads to a full disk were never refused")
	}

	// Reads keep working, byte for byte.
	resp, err := casc.BatchReadBlobs(ctx, &repb.BatchReadBlobsRequest{Digests: storedDigests[:min(len(storedDigests), 10)]})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range resp.GetResponses() {
		if r.GetStatus().GetCode() != 0 || !bytes.Equal(r.GetData(), stored[i]) {
			t.Fatalf("blob %d unreadable after the disk filled: %v", i, r.GetStatus())
		}
	}
	// Nothing half-written: no temporary files are left.
	if n := countTemp(t, dir); n != 0 {
		t.Fatalf("%d temporary files left on the full disk", n)
	}
}

func countTemp(t *testing.T, dir string) int {
	n := 0
	filepathWalk(dir, func(name string) {
		if len(name) > 4 && name[:4] == "tmp-" {
			n++
		}
	})
	return n
}
