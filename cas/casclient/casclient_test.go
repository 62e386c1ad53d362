package casclient_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kiln-build/kiln/cas"
	"github.com/kiln-build/kiln/cas/casclient"
	"github.com/kiln-build/kiln/cas/casserver"
	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/cas/memory"
)

// env is a kiln CAS on a real loopback socket that counts the RPCs it gets.
type env struct {
	conn    *grpc.ClientConn
	raw     cas.BlobStore // the backend, without verification: lets tests plant bad data
	store   cas.BlobStore
	mu      sync.Mutex
	calls   map[string]int // by method name, e.g. "BatchUpdateBlobs"
	treeCut bool           // GetTree ends every stream after its first page
}

func (e *env) count(method string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls[method[strings.LastIndex(method, "/")+1:]]++
}

// take returns the counts so far and resets them.
func (e *env) take() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.calls
	e.calls = map[string]int{}
	return c
}

// cutTreeCAS ends GetTree after the first page when env.treeCut is set, as
// a server may, so that the client has to follow the page token.
type cutTreeCAS struct {
	*casserver.CAS
	e *env
}

var errCut = errors.New("cut")

type cutStream struct {
	repb.ContentAddressableStorage_GetTreeServer
	sent bool
}

func (s *cutStream) Send(r *repb.GetTreeResponse) error {
	if s.sent {
		return errCut
	}
	s.sent = true
	return s.ContentAddressableStorage_GetTreeServer.Send(r)
}

func (c cutTreeCAS) GetTree(req *repb.GetTreeRequest, stream repb.ContentAddressableStorage_GetTreeServer) error {
	if !c.e.treeCut {
		return c.CAS.GetTree(req, stream)
	}
	if err := c.CAS.GetTree(req, &cutStream{ContentAddressableStorage_GetTreeServer: stream}); err != nil && !errors.Is(err, errCut) {
		return err
	}
	return nil
}

func newEnv(t *testing.T, batchLimit int64) *env {
	t.Helper()
	e := &env{raw: memory.New(1 << 30), calls: map[string]int{}}
	e.store = cas.NewVerifyingStore(cas.NewEmptyBlobStore(e.raw))
	gs := grpc.NewServer(
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			e.count(info.FullMethod)
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			e.count(info.FullMethod)
			return h(srv, ss)
		}),
	)
	bsrv := casserver.NewByteStream(e.store, time.Second)
	repb.RegisterContentAddressableStorageServer(gs, cutTreeCAS{casserver.NewCAS(e.store, batchLimit), e})
	repb.RegisterCapabilitiesServer(gs, casserver.NewCapabilities(batchLimit, nil))
	bspb.RegisterByteStreamServer(gs, bsrv)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(l)
	e.conn, err = grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.conn.Close()
		bsrv.Close()
		gs.Stop()
	})
	return e
}

func (e *env) client(t *testing.T) *casclient.Client {
	t.Helper()
	caps, err := casclient.FetchCapabilities(context.Background(), e.conn, "inst")
	if err != nil {
		t.Fatal(err)
	}
	return casclient.New(e.conn, "inst", digest.SHA256, caps.GetCacheCapabilities().GetMaxBatchTotalSizeBytes())
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func requireCode(t *testing.T, err error, want codes.Code, msgPart string) {
	t.Helper()
	if status.Code(err) != want {
		t.Fatalf("got %v, want code %v", err, want)
	}
	if !strings.Contains(status.Convert(err).Message(), msgPart) {
		t.Fatalf("message %q does not mention %q", status.Convert(err).Message(), msgPart)
	}
}

func TestUploadAndRead(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 64<<10) // small batches, so that uploads need several
	c := e.client(t)
	dir := t.TempDir()

	var blobs []casclient.Blob
	var ds []digest.Digest
	contents := map[digest.Digest][]byte{}
	for i := 0; i < 40; i++ { // 40 x 5000 bytes: at least 4 batches of 64 KiB
		data := randomBytes(5000)
		d := digest.FromBytes(digest.SHA256, data)
		b := casclient.Blob{Digest: d, Data: data}
		if i%2 == 0 { // half of them from files
			b = casclient.Blob{Digest: d, Path: filepath.Join(dir, d.Hash())}
			if err := os.WriteFile(b.Path, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		blobs = append(blobs, b)
		ds = append(ds, d)
		contents[d] = data
	}
	large := randomBytes(3<<20 + 5)
	ld := digest.FromBytes(digest.SHA256, large)
	lpath := filepath.Join(dir, "large")
	if err := os.WriteFile(lpath, large, 0o644); err != nil {
		t.Fatal(err)
	}
	contents[ld] = large
	blobs = append(blobs, casclient.Blob{Digest: ld, Path: lpath}, blobs[1], casclient.Blob{Digest: digest.Empty(digest.SHA256)})
	ds = append(ds, ld, digest.Empty(digest.SHA256))
	e.take()

	missing, err := c.FindMissing(ctx, ds)
	if err != nil || len(missing) != 41 {
		t.Fatalf("FindMissing before upload: %d missing, err %v; want 41 (the empty blob is never missing)", len(missing), err)
	}
	e.take()
	if err := c.UploadMissing(ctx, blobs); err != nil {
		t.Fatal(err)
	}
	calls := e.take()
	if calls["BatchUpdateBlobs"] < 4 || calls["Write"] != 1 || calls["FindMissingBlobs"] != 1 {
		t.Errorf("upload calls %v, want >= 4 BatchUpdateBlobs, 1 Write, 1 FindMissingBlobs", calls)
	}
	missing, err = c.FindMissing(ctx, ds)
	if err != nil || len(missing) != 0 {
		t.Fatalf("FindMissing after upload: %v, err %v", missing, err)
	}

	t.Run("UploadMissingSkipsPresentBlobs", func(t *testing.T) {
		e.take()
		if err := c.UploadMissing(ctx, blobs); err != nil {
			t.Fatal(err)
		}
		if calls := e.take(); calls["BatchUpdateBlobs"]+calls["Write"] != 0 {
			t.Errorf("second upload sent data: %v", calls)
		}
	})
	t.Run("ReadBlob", func(t *testing.T) {
		e.take()
		for _, d := range []digest.Digest{ds[3], ld, digest.Empty(digest.SHA256)} {
			got, err := c.ReadBlob(ctx, d)
			if err != nil || !bytes.Equal(got, contents[d]) && d.Size() > 0 {
				t.Fatalf("ReadBlob %s: %d bytes, %v", d, len(got), err)
			}
		}
		if calls := e.take(); calls["BatchReadBlobs"] != 1 || calls["Read"] != 1 {
			t.Errorf("reads %v, want one batch (small) and one ByteStream (large); none for the empty blob", calls)
		}
	})
	t.Run("BatchReadSplitsByLimit", func(t *testing.T) {
		e.take()
		absent := digest.FromBytes(digest.SHA256, []byte("absent"))
		got, err := c.BatchRead(ctx, append([]digest.Digest{absent}, ds...))
		requireCode(t, err, codes.NotFound, "read blob "+absent.String()+": not found")
		if len(got) != len(ds) {
			t.Fatalf("BatchRead returned %d blobs, want the %d present ones", len(got), len(ds))
		}
		for d, data := range got {
			if !bytes.Equal(data, contents[d]) && d.Size() > 0 {
				t.Fatalf("blob %s differs", d)
			}
		}
		if calls := e.take(); calls["BatchReadBlobs"] < 4 || calls["Read"] != 1 {
			t.Errorf("reads %v, want >= 4 batches and one ByteStream read", calls)
		}
	})
	t.Run("ReadMissingNamesTheDigest", func(t *testing.T) {
		absent := digest.FromBytes(digest.SHA256, randomBytes(2<<20))
		_, err := c.ReadBlob(ctx, absent)
		requireCode(t, err, codes.NotFound, "read blob "+absent.String())
		absent = digest.FromBytes(digest.SHA256, []byte("small"))
		_, err = c.ReadBlob(ctx, absent)
		requireCode(t, err, codes.NotFound, "read blob "+absent.String())
	})
	t.Run("OtherFunctionIsRejected", func(t *testing.T) {
		_, err := c.ReadBlob(ctx, digest.FromBytes(digest.BLAKE3, []byte("x")))
		requireCode(t, err, codes.InvalidArgument, "digest function blake3")
	})
	t.Run("UploadOfAChangedFileFails", func(t *testing.T) {
		data := randomBytes(100)
		d := digest.FromBytes(digest.SHA256, data)
		p := filepath.Join(dir, "changed")
		os.WriteFile(p, randomBytes(100), 0o644)
		err := c.Upload(ctx, []casclient.Blob{{Digest: d, Path: p}})
		requireCode(t, err, codes.InvalidArgument, "upload blob "+d.String())
	})
}

func TestDownloadToFile(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1<<20)
	c := e.client(t)
	dir := t.TempDir()
	data := randomBytes(2<<20 + 3)
	d := digest.FromBytes(digest.SHA256, data)
	if err := c.Upload(ctx, []casclient.Blob{{Digest: d, Data: data}}); err != nil {
		t.Fatal(err)
	}
	noTemps := func(t *testing.T) {
		t.Helper()
		ents, _ := os.ReadDir(dir)
		for _, ent := range ents {
			if strings.Contains(ent.Name(), ".tmp-") {
				t.Fatalf("temporary file %s left behind", ent.Name())
			}
		}
	}

	t.Run("Executable", func(t *testing.T) {
		p := filepath.Join(dir, "exe")
		if err := c.DownloadToFile(ctx, d, p, true); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(p)
		fi, _ := os.Stat(p)
		if !bytes.Equal(got, data) || fi.Mode().Perm() != 0o755 {
			t.Fatalf("got %d bytes, mode %v", len(got), fi.Mode())
		}
		noTemps(t)
	})
	t.Run("EmptyBlob", func(t *testing.T) {
		p := filepath.Join(dir, "empty")
		if err := c.DownloadToFile(ctx, digest.Empty(digest.SHA256), p, false); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(p)
		if err != nil || fi.Size() != 0 || fi.Mode().Perm() != 0o644 {
			t.Fatalf("empty file: %v %v", fi, err)
		}
	})
	t.Run("MissingLeavesNothing", func(t *testing.T) {
		p := filepath.Join(dir, "missing")
		absent := digest.FromBytes(digest.SHA256, []byte("absent"))
		err := c.DownloadToFile(ctx, absent, p, false)
		requireCode(t, err, codes.NotFound, absent.String())
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Fatalf("file exists after a failed download: %v", err)
		}
		noTemps(t)
	})
	t.Run("CorruptDataIsNeverPublished", func(t *testing.T) {
		// The backend holds wrong bytes under a digest: the client must
		// notice and leave no file under the final name.
		good := randomBytes(3 << 20)
		gd := digest.FromBytes(digest.SHA256, good)
		bad := append([]byte(nil), good...)
		bad[len(bad)-1] ^= 1
		if err := e.raw.Put(ctx, gd, bytes.NewReader(bad)); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "corrupt")
		err := c.DownloadToFile(ctx, gd, p, false)
		requireCode(t, err, codes.Internal, "read blob "+gd.String()+": received data is")
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Fatalf("file exists after a corrupt download: %v", err)
		}
		noTemps(t)
		_, err = c.ReadBlob(ctx, gd)
		requireCode(t, err, codes.Internal, "received data is")
	})
	t.Run("CorruptSmallBlob", func(t *testing.T) {
		gd := digest.FromBytes(digest.SHA256, []byte("good"))
		if err := e.raw.Put(ctx, gd, strings.NewReader("evil")); err != nil {
			t.Fatal(err)
		}
		_, err := c.ReadBlob(ctx, gd)
		requireCode(t, err, codes.Internal, "read blob "+gd.String()+": received data is")
	})
}

func TestGetTree(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 4<<20)
	c := e.client(t)
	// A root with 1500 distinct subdirectories: two pages of 1000.
	root := &repb.Directory{}
	var blobs []casclient.Blob
	for i := 0; i < 1500; i++ {
		sub := &repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: digest.Empty(digest.SHA256).Proto()}}}
		sub.Symlinks = []*repb.SymlinkNode{{Name: "s", Target: strings.Repeat("x", i+1)}}
		data, _ := proto.Marshal(sub)
		d := digest.FromBytes(digest.SHA256, data)
		blobs = append(blobs, casclient.Blob{Digest: d, Data: data})
		root.Directories = append(root.Directories, &repb.DirectoryNode{Name: strings.Repeat("d", i+1), Digest: d.Proto()})
	}
	data, _ := proto.Marshal(root)
	rd := digest.FromBytes(digest.SHA256, data)
	blobs = append(blobs, casclient.Blob{Digest: rd, Data: data})
	if err := c.Upload(ctx, blobs); err != nil {
		t.Fatal(err)
	}
	for _, cut := range []bool{false, true} {
		e.treeCut = cut
		e.take()
		dirs, err := c.GetTree(ctx, rd)
		if err != nil || len(dirs) != 1501 {
			t.Fatalf("cut=%v: %d directories, err %v", cut, len(dirs), err)
		}
		if calls := e.take(); cut && calls["GetTree"] != 2 {
			t.Errorf("cut=%v: %d GetTree streams, want 2 (page token followed)", cut, calls["GetTree"])
		}
	}
	e.treeCut = false
	absent := digest.FromBytes(digest.SHA256, []byte("no such tree"))
	_, err := c.GetTree(ctx, absent)
	requireCode(t, err, codes.NotFound, "get tree "+absent.String())
}

func TestFileBlob(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	small, large := randomBytes(1000), randomBytes(5000)
	for _, tc := range []struct {
		name     string
		data     []byte
		maxData  int64
		wantData bool
	}{
		{"SmallIsKeptInMemory", small, 4096, true},
		{"AtTheLimitIsKeptInMemory", small, 1000, true},
		{"LargeIsReadAgainWhenSent", large, 4096, false},
		{"NothingInMemoryWithAZeroLimit", small, 0, false},
		{"EmptyIsKeptInMemory", nil, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := write(tc.name, tc.data)
			b, err := casclient.FileBlob(digest.SHA256, p, tc.maxData)
			if err != nil {
				t.Fatal(err)
			}
			if want := digest.FromBytes(digest.SHA256, tc.data); b.Digest != want {
				t.Errorf("digest %s, want %s", b.Digest, want)
			}
			if tc.wantData && (b.Path != "" || !bytes.Equal(b.Data, tc.data) || b.Data == nil) {
				t.Errorf("path %q, %d bytes of data; want the content in memory", b.Path, len(b.Data))
			}
			if !tc.wantData && (b.Path != p || b.Data != nil) {
				t.Errorf("path %q, %d bytes of data; want the path only", b.Path, len(b.Data))
			}
		})
	}
	t.Run("SymlinkIsNotFollowed", func(t *testing.T) {
		p := filepath.Join(dir, "link")
		if err := os.Symlink(write("target", small), p); err != nil {
			t.Fatal(err)
		}
		_, err := casclient.FileBlob(digest.SHA256, p, 4096)
		requireCode(t, err, codes.Internal, "link")
	})
	t.Run("MissingFile", func(t *testing.T) {
		_, err := casclient.FileBlob(digest.SHA256, filepath.Join(dir, "absent"), 4096)
		requireCode(t, err, codes.InvalidArgument, "absent")
	})
}

func TestUploadNew(t *testing.T) {
	// Blobs in memory that fit a batch are sent without a question; blobs
	// named by path are asked about, and sent only if missing.
	ctx := context.Background()
	e := newEnv(t, 1<<20)
	c := e.client(t)
	dir := t.TempDir()
	mem := randomBytes(100)
	onDisk, present := randomBytes(200), randomBytes(300)
	pd := digest.FromBytes(digest.SHA256, present)
	if err := c.Upload(ctx, []casclient.Blob{{Digest: pd, Data: present}}); err != nil {
		t.Fatal(err)
	}
	blob := func(data []byte) casclient.Blob {
		p := filepath.Join(dir, digest.FromBytes(digest.SHA256, data).Hash())
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return casclient.Blob{Digest: digest.FromBytes(digest.SHA256, data), Path: p}
	}
	e.take()
	md := digest.FromBytes(digest.SHA256, mem)
	if err := c.UploadNew(ctx, []casclient.Blob{{Digest: md, Data: mem}, blob(onDisk), blob(present)}); err != nil {
		t.Fatal(err)
	}
	if calls := e.take(); calls["FindMissingBlobs"] != 1 || calls["BatchUpdateBlobs"] != 2 {
		t.Errorf("calls %v, want 1 FindMissingBlobs (for the files) and 2 BatchUpdateBlobs", calls)
	}
	missing, err := c.FindMissing(ctx, []digest.Digest{md, digest.FromBytes(digest.SHA256, onDisk), pd})
	if err != nil || len(missing) != 0 {
		t.Errorf("missing after UploadNew: %v, err %v", missing, err)
	}
	e.take()
	if err := c.UploadNew(ctx, []casclient.Blob{{Digest: md, Data: mem}}); err != nil {
		t.Fatal(err)
	}
	if calls := e.take(); calls["FindMissingBlobs"] != 0 || calls["BatchUpdateBlobs"] != 1 {
		t.Errorf("calls %v, want only BatchUpdateBlobs", calls)
	}
}
