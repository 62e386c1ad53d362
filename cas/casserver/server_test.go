package casserver_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/klauspost/compress/zstd"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kiln-build/kiln/cas"
	"github.com/kiln-build/kiln/cas/actioncache"
	"github.com/kiln-build/kiln/cas/casserver"
	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/cas/memory"
)

const testBatchLimit = 1 << 20

// env is a kiln storage server on a real loopback socket.
type env struct {
	cas   repb.ContentAddressableStorageClient
	bs    bspb.ByteStreamClient
	ac    repb.ActionCacheClient
	caps  repb.CapabilitiesClient
	store cas.BlobStore
}

func newEnv(t *testing.T) *env {
	t.Helper()
	backend := memory.New(1 << 30)
	store := cas.NewVerifyingStore(cas.NewEmptyBlobStore(backend))
	gs := grpc.NewServer()
	bsrv := casserver.NewByteStream(store, 2*time.Second)
	repb.RegisterContentAddressableStorageServer(gs, casserver.NewCAS(store, testBatchLimit))
	repb.RegisterCapabilitiesServer(gs, casserver.NewCapabilities(testBatchLimit, nil))
	repb.RegisterActionCacheServer(gs, actioncache.NewService(actioncache.New(memory.New(1<<20), store)))
	bspb.RegisterByteStreamServer(gs, bsrv)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(l)
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		bsrv.Close()
		gs.Stop()
	})
	return &env{
		cas: repb.NewContentAddressableStorageClient(conn), bs: bspb.NewByteStreamClient(conn),
		ac: repb.NewActionCacheClient(conn), caps: repb.NewCapabilitiesClient(conn), store: store,
	}
}

func blob(data []byte) *repb.Digest {
	h := sha256.Sum256(data)
	return &repb.Digest{Hash: hex.EncodeToString(h[:]), SizeBytes: int64(len(data))}
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func requireCode(t *testing.T, err error, want codes.Code, msgPart string) {
	t.Helper()
	if status.Code(err) != want {
		t.Fatalf("got %v, want code %v", err, want)
	}
	if msgPart != "" && !strings.Contains(status.Convert(err).Message(), msgPart) {
		t.Fatalf("message %q does not mention %q", status.Convert(err).Message(), msgPart)
	}
}

func (e *env) missing(t *testing.T, ds ...*repb.Digest) int {
	t.Helper()
	resp, err := e.cas.FindMissingBlobs(context.Background(), &repb.FindMissingBlobsRequest{BlobDigests: ds})
	if err != nil {
		t.Fatal(err)
	}
	return len(resp.GetMissingBlobDigests())
}

func (e *env) upload(t *testing.T, data []byte) *repb.Digest {
	t.Helper()
	d := blob(data)
	resp, err := e.cas.BatchUpdateBlobs(context.Background(), &repb.BatchUpdateBlobsRequest{
		Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: d, Data: data}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if c := resp.GetResponses()[0].GetStatus().GetCode(); c != 0 {
		t.Fatalf("upload: %v", resp.GetResponses()[0].GetStatus())
	}
	return d
}

func TestCapabilities(t *testing.T) {
	e := newEnv(t)
	c, err := e.caps.GetCapabilities(context.Background(), &repb.GetCapabilitiesRequest{InstanceName: "x"})
	if err != nil {
		t.Fatal(err)
	}
	cc := c.GetCacheCapabilities()
	if c.GetLowApiVersion().GetMajor() != 2 || c.GetHighApiVersion().GetMinor() < 3 {
		t.Errorf("api versions %v..%v", c.GetLowApiVersion(), c.GetHighApiVersion())
	}
	if !cc.GetActionCacheUpdateCapabilities().GetUpdateEnabled() || cc.GetMaxBatchTotalSizeBytes() != testBatchLimit {
		t.Errorf("cache capabilities %v", cc)
	}
	if len(cc.GetSupportedCompressors()) != 1 || cc.GetSupportedCompressors()[0] != repb.Compressor_ZSTD {
		t.Errorf("compressors %v", cc.GetSupportedCompressors())
	}
	if cc.GetDigestFunctions()[0] != repb.DigestFunction_SHA256 {
		t.Errorf("digest functions %v", cc.GetDigestFunctions())
	}
	if c.GetExecutionCapabilities().GetExecEnabled() {
		t.Error("execution announced without an execution service")
	}
}

func TestFindMissingRejectsBadDigests(t *testing.T) {
	e := newEnv(t)
	good := strings.Repeat("a", 64)
	for _, tc := range []struct {
		name string
		d    *repb.Digest
		fn   repb.DigestFunction_Value
		msg  string
	}{
		{"NotHex", &repb.Digest{Hash: strings.Repeat("g", 64), SizeBytes: 1}, 0, "not lowercase hex"},
		{"UpperCase", &repb.Digest{Hash: strings.Repeat("A", 64), SizeBytes: 1}, 0, "not lowercase hex"},
		{"TooShort", &repb.Digest{Hash: "abc", SizeBytes: 1}, 0, "3 characters, want 64"},
		{"TooLong", &repb.Digest{Hash: good + "00", SizeBytes: 1}, 0, "66 characters"},
		{"NegativeSize", &repb.Digest{Hash: good, SizeBytes: -1}, 0, "negative size"},
		{"Empty", &repb.Digest{}, 0, "0 characters, want 64"},
		{"UnknownFunction", &repb.Digest{Hash: good, SizeBytes: 1}, repb.DigestFunction_MD5, "not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.cas.FindMissingBlobs(context.Background(), &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{tc.d}, DigestFunction: tc.fn})
			requireCode(t, err, codes.InvalidArgument, tc.msg)
		})
	}
	t.Run("BadInstanceName", func(t *testing.T) {
		_, err := e.cas.FindMissingBlobs(context.Background(), &repb.FindMissingBlobsRequest{InstanceName: "a/../b"})
		requireCode(t, err, codes.InvalidArgument, "instance name")
	})
	t.Run("EmptyBlobAlwaysPresent", func(t *testing.T) {
		if n := e.missing(t, blob(nil)); n != 0 {
			t.Fatalf("empty blob reported missing")
		}
	})
}

func TestBatchUpdate(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	data := randomBytes(t, 1000)
	t.Run("HashMismatchStoresNothing", func(t *testing.T) {
		wrong := blob(append([]byte{1}, data[1:]...))
		resp, err := e.cas.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{
			{Digest: wrong, Data: data},
			{Digest: &repb.Digest{Hash: blob(data).Hash, SizeBytes: 999}, Data: data},
			{Digest: &repb.Digest{Hash: "zz", SizeBytes: 1}, Data: data[:1]},
		}})
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range resp.GetResponses() {
			if codes.Code(r.GetStatus().GetCode()) != codes.InvalidArgument {
				t.Errorf("response %d: %v, want INVALID_ARGUMENT", i, r.GetStatus())
			}
		}
		if n := e.missing(t, wrong, blob(data)); n != 2 {
			t.Fatalf("%d of 2 missing after bad uploads", n)
		}
	})
	t.Run("OverTheLimit", func(t *testing.T) {
		big := randomBytes(t, testBatchLimit/2+1)
		_, err := e.cas.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{
			{Digest: blob(big), Data: big}, {Digest: blob(big[1:]), Data: big[1:]}, {Digest: blob(data), Data: data},
		}})
		requireCode(t, err, codes.InvalidArgument, "more than the limit")
		if n := e.missing(t, blob(data)); n != 1 {
			t.Fatal("part of a refused batch was stored")
		}
	})
	t.Run("ZstdAndReadBack", func(t *testing.T) {
		enc, _ := zstd.NewWriter(nil)
		comp := enc.EncodeAll(data, nil)
		resp, err := e.cas.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{
			{Digest: blob(data), Data: comp, Compressor: repb.Compressor_ZSTD},
		}})
		if err != nil || resp.GetResponses()[0].GetStatus().GetCode() != 0 {
			t.Fatal(err, resp)
		}
		rd, err := e.cas.BatchReadBlobs(ctx, &repb.BatchReadBlobsRequest{Digests: []*repb.Digest{blob(data), blob([]byte("absent")), blob(nil)}})
		if err != nil {
			t.Fatal(err)
		}
		r := rd.GetResponses()
		if !bytes.Equal(r[0].GetData(), data) || r[0].GetStatus().GetCode() != 0 {
			t.Errorf("read back %d bytes, status %v", len(r[0].GetData()), r[0].GetStatus())
		}
		if codes.Code(r[1].GetStatus().GetCode()) != codes.NotFound {
			t.Errorf("absent blob: %v", r[1].GetStatus())
		}
		if r[2].GetStatus().GetCode() != 0 || len(r[2].GetData()) != 0 {
			t.Errorf("empty blob: %v", r[2].GetStatus())
		}
	})
	t.Run("ZstdGarbage", func(t *testing.T) {
		other := randomBytes(t, 10)
		resp, err := e.cas.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{
			{Digest: blob(other), Data: []byte("not zstd at all"), Compressor: repb.Compressor_ZSTD},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if c := codes.Code(resp.GetResponses()[0].GetStatus().GetCode()); c != codes.InvalidArgument {
			t.Fatalf("garbage zstd: %v", resp.GetResponses()[0].GetStatus())
		}
	})
	t.Run("ReadOverTheLimit", func(t *testing.T) {
		_, err := e.cas.BatchReadBlobs(ctx, &repb.BatchReadBlobsRequest{Digests: []*repb.Digest{{Hash: blob(data).Hash, SizeBytes: testBatchLimit + 1}}})
		requireCode(t, err, codes.InvalidArgument, "more than the limit")
	})
}

func writeName(instance string, d *repb.Digest) string {
	return digest.Resource{Instance: instance, UploadID: "3f5e2d7c-0000-4000-8000-000000000001", Digest: digest.MustNew(digest.SHA256, d.Hash, d.SizeBytes)}.WriteName()
}

func readName(instance string, d *repb.Digest) string {
	return digest.Resource{Instance: instance, Digest: digest.MustNew(digest.SHA256, d.Hash, d.SizeBytes)}.ReadName()
}

// write sends data in chunks starting at offset, finishing if finish.
func write(t *testing.T, bs bspb.ByteStreamClient, name string, data []byte, offset int64, finish bool) (*bspb.WriteResponse, error) {
	t.Helper()
	stream, err := bs.Write(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	const chunk = 64 << 10
	for i := 0; i < len(data) || i == 0; i += chunk {
		end := min(i+chunk, len(data))
		req := &bspb.WriteRequest{WriteOffset: offset + int64(i), Data: data[i:end], FinishWrite: finish && end == len(data)}
		if i == 0 {
			req.ResourceName = name
		}
		if err := stream.Send(req); err != nil {
			break // the server answered early; CloseAndRecv tells why
		}
	}
	return stream.CloseAndRecv()
}

func readAll(t *testing.T, bs bspb.ByteStreamClient, req *bspb.ReadRequest) ([]byte, error) {
	t.Helper()
	stream, err := bs.Read(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for {
		resp, err := stream.Recv()
		if err != nil {
			if err.Error() == "EOF" {
				return out, nil
			}
			return out, err
		}
		out = append(out, resp.GetData()...)
	}
}

func TestByteStream(t *testing.T) {
	e := newEnv(t)
	data := randomBytes(t, 3<<20+17)
	d := blob(data)
	t.Run("WriteThenRead", func(t *testing.T) {
		resp, err := write(t, e.bs, writeName("inst/a", d), data, 0, true)
		if err != nil || resp.GetCommittedSize() != d.SizeBytes {
			t.Fatalf("write: %v %v", resp, err)
		}
		got, err := readAll(t, e.bs, &bspb.ReadRequest{ResourceName: readName("inst/a", d)})
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read back %d bytes, err %v", len(got), err)
		}
		got, err = readAll(t, e.bs, &bspb.ReadRequest{ResourceName: readName("", d), ReadOffset: 1000, ReadLimit: 5000})
		if err != nil || !bytes.Equal(got, data[1000:6000]) {
			t.Fatalf("ranged read: %d bytes, err %v", len(got), err)
		}
		got, err = readAll(t, e.bs, &bspb.ReadRequest{ResourceName: readName("", d), ReadOffset: d.SizeBytes})
		if err != nil || len(got) != 0 {
			t.Fatalf("read at the end: %d bytes, err %v", len(got), err)
		}
	})
	t.Run("AlreadyPresentAnswersAtOnce", func(t *testing.T) {
		resp, err := write(t, e.bs, writeName("", d), data[:10], 0, false)
		if err != nil || resp.GetCommittedSize() != d.SizeBytes {
			t.Fatalf("write of a stored blob: %v %v", resp, err)
		}
	})
	t.Run("ReadPastTheEnd", func(t *testing.T) {
		_, err := readAll(t, e.bs, &bspb.ReadRequest{ResourceName: readName("", d), ReadOffset: d.SizeBytes + 1})
		requireCode(t, err, codes.OutOfRange, "past the end")
	})
	t.Run("ReadNegative", func(t *testing.T) {
		_, err := readAll(t, e.bs, &bspb.ReadRequest{ResourceName: readName("", d), ReadLimit: -1})
		requireCode(t, err, codes.InvalidArgument, "read_limit")
	})
	t.Run("ReadMissing", func(t *testing.T) {
		_, err := readAll(t, e.bs, &bspb.ReadRequest{ResourceName: readName("", blob([]byte("nope")))})
		requireCode(t, err, codes.NotFound, "")
	})
	t.Run("BadResourceNames", func(t *testing.T) {
		for _, name := range []string{"", "blobs", "blobs/abc/1", "x/blobs/" + d.Hash + "/-1", "x/blobs/" + d.Hash + "/1x", "x/../blobs/" + d.Hash + "/1", "compressed-blobs/lz4/" + d.Hash + "/1", "blobs/" + d.Hash + "/1/extra"} {
			_, err := readAll(t, e.bs, &bspb.ReadRequest{ResourceName: name})
			requireCode(t, err, codes.InvalidArgument, "")
		}
		_, err := write(t, e.bs, "blobs/"+d.Hash+"/1", []byte("x"), 0, true)
		requireCode(t, err, codes.InvalidArgument, "uploads")
	})
	other := randomBytes(t, 1<<20)
	od := blob(other)
	t.Run("WrongOffset", func(t *testing.T) {
		stream, _ := e.bs.Write(context.Background())
		stream.Send(&bspb.WriteRequest{ResourceName: writeName("", od), Data: other[:100]})
		stream.Send(&bspb.WriteRequest{WriteOffset: 99, Data: other[100:]})
		_, err := stream.CloseAndRecv()
		requireCode(t, err, codes.InvalidArgument, "write_offset 99, want 100")
		_, err = write(t, e.bs, writeName("", od), other, 5, true)
		requireCode(t, err, codes.InvalidArgument, "no upload of it is in progress")
		if e.missing(t, od) != 1 {
			t.Fatal("blob stored after bad writes")
		}
	})
	t.Run("HashMismatch", func(t *testing.T) {
		bad := append([]byte{}, other...)
		bad[500] ^= 1
		_, err := write(t, e.bs, writeName("", od), bad, 0, true)
		requireCode(t, err, codes.InvalidArgument, "")
		_, err = write(t, e.bs, writeName("", od), append(other, 1), 0, true)
		requireCode(t, err, codes.InvalidArgument, "")
		_, err = write(t, e.bs, writeName("", od), other[:1000], 0, true)
		requireCode(t, err, codes.InvalidArgument, "")
		if e.missing(t, od) != 1 {
			t.Fatal("blob stored after a mismatching write")
		}
	})
	t.Run("DisconnectThenResume", func(t *testing.T) {
		name := writeName("", od)
		ctx, cancel := context.WithCancel(context.Background())
		stream, _ := e.bs.Write(ctx)
		stream.Send(&bspb.WriteRequest{ResourceName: name, Data: other[:300000]})
		// Wait until the server has the bytes, then drop the connection.
		var st *bspb.QueryWriteStatusResponse
		for i := 0; i < 200; i++ {
			st, _ = e.bs.QueryWriteStatus(context.Background(), &bspb.QueryWriteStatusRequest{ResourceName: name})
			if st.GetCommittedSize() == 300000 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		if st.GetCommittedSize() != 300000 || st.GetComplete() {
			t.Fatalf("status before resume: %v", st)
		}
		if e.missing(t, od) != 1 {
			t.Fatal("partial upload visible")
		}
		resp, err := write(t, e.bs, name, other[300000:], 300000, true)
		if err != nil || resp.GetCommittedSize() != od.SizeBytes {
			t.Fatalf("resume: %v %v", resp, err)
		}
		if e.missing(t, od) != 0 {
			t.Fatal("resumed upload not stored")
		}
	})
	t.Run("AbandonedUploadStoresNothing", func(t *testing.T) {
		third := randomBytes(t, 200000)
		td := blob(third)
		ctx, cancel := context.WithCancel(context.Background())
		stream, _ := e.bs.Write(ctx)
		stream.Send(&bspb.WriteRequest{ResourceName: writeName("", td), Data: third[:100000]})
		time.Sleep(50 * time.Millisecond)
		cancel()
		time.Sleep(2500 * time.Millisecond) // past the 2s resume window
		st, err := e.bs.QueryWriteStatus(context.Background(), &bspb.QueryWriteStatusRequest{ResourceName: writeName("", td)})
		if err != nil || st.GetCommittedSize() != 0 || e.missing(t, td) != 1 {
			t.Fatalf("after abandoning: %v %v", st, err)
		}
	})
	t.Run("Compressed", func(t *testing.T) {
		plain := bytes.Repeat([]byte("kiln compresses well "), 100000)
		pd := blob(plain)
		enc, _ := zstd.NewWriter(nil)
		comp := enc.EncodeAll(plain, nil)
		r := digest.Resource{UploadID: "u1", Compressor: repb.Compressor_ZSTD, Digest: digest.MustNew(digest.SHA256, pd.Hash, pd.SizeBytes)}
		resp, err := write(t, e.bs, r.WriteName(), comp, 0, true)
		if err != nil || resp.GetCommittedSize() != int64(len(comp)) {
			t.Fatalf("compressed write: %v %v", resp, err)
		}
		got, err := readAll(t, e.bs, &bspb.ReadRequest{ResourceName: r.ReadName(), ReadOffset: 7})
		if err != nil {
			t.Fatal(err)
		}
		dec, _ := zstd.NewReader(nil)
		out, err := dec.DecodeAll(got, nil)
		if err != nil || !bytes.Equal(out, plain[7:]) {
			t.Fatalf("compressed read: %d bytes (%d compressed), err %v", len(out), len(got), err)
		}
		_, err = readAll(t, e.bs, &bspb.ReadRequest{ResourceName: r.ReadName(), ReadLimit: 5})
		requireCode(t, err, codes.InvalidArgument, "read_limit must be 0")
		bomb := bytes.Repeat([]byte{0}, 10<<20)
		bd := digest.FromBytes(digest.SHA256, bomb[:100])
		_, err = write(t, e.bs, digest.Resource{UploadID: "u2", Compressor: repb.Compressor_ZSTD, Digest: bd}.WriteName(), enc.EncodeAll(bomb, nil), 0, true)
		requireCode(t, err, codes.InvalidArgument, "")
	})
}

func TestGetTreePaging(t *testing.T) {
	e := newEnv(t)
	// root -> a, b; a -> c; b -> c (c is shared and returned once).
	put := func(dir *repb.Directory) *repb.Digest {
		data, _ := proto.Marshal(dir)
		return e.upload(t, data)
	}
	c := put(&repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: blob([]byte("x"))}}})
	a := put(&repb.Directory{Directories: []*repb.DirectoryNode{{Name: "c", Digest: c}}})
	b := put(&repb.Directory{Directories: []*repb.DirectoryNode{{Name: "c", Digest: c}}, Files: []*repb.FileNode{{Name: "g", Digest: blob(nil)}}})
	root := put(&repb.Directory{Directories: []*repb.DirectoryNode{{Name: "a", Digest: a}, {Name: "b", Digest: b}}})
	var all []*repb.Directory
	token := ""
	pages := 0
	for {
		stream, err := e.cas.GetTree(context.Background(), &repb.GetTreeRequest{RootDigest: root, PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv() // take one page per call, then resume with its token
		if err != nil {
			t.Fatal(err)
		}
		pages++
		all = append(all, resp.GetDirectories()...)
		token = resp.GetNextPageToken()
		if token == "" {
			break
		}
	}
	if len(all) != 4 || pages != 2 {
		t.Fatalf("got %d directories in %d pages, want 4 in 2", len(all), pages)
	}
	_, err := recvAll(e.cas.GetTree(context.Background(), &repb.GetTreeRequest{RootDigest: root, PageToken: "garbage"}))
	requireCode(t, err, codes.InvalidArgument, "page_token")
	_, err = recvAll(e.cas.GetTree(context.Background(), &repb.GetTreeRequest{RootDigest: blob([]byte("no such dir"))}))
	requireCode(t, err, codes.NotFound, "")
}

func recvAll(stream repb.ContentAddressableStorage_GetTreeClient, err error) (int, error) {
	if err != nil {
		return 0, err
	}
	n := 0
	for {
		resp, err := stream.Recv()
		if err != nil {
			if err.Error() == "EOF" {
				return n, nil
			}
			return n, err
		}
		n += len(resp.GetDirectories())
	}
}

// TestConcurrentWritesOfOneBlob has many clients upload the same blob at
// once, through ByteStream (same and different upload ids) and batches.
func TestConcurrentWritesOfOneBlob(t *testing.T) {
	e := newEnv(t)
	data := randomBytes(t, 700000)
	d := blob(data)
	errs := make(chan error, 24)
	for i := 0; i < 24; i++ {
		go func() {
			switch i % 3 {
			case 0:
				_, err := write(t, e.bs, writeName("", d), data, 0, true)
				errs <- err
			case 1:
				r := digest.Resource{UploadID: strings.Repeat("u", i), Digest: digest.MustNew(digest.SHA256, d.Hash, d.SizeBytes)}
				_, err := write(t, e.bs, r.WriteName(), data, 0, true)
				errs <- err
			default:
				resp, err := e.cas.BatchUpdateBlobs(context.Background(), &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: d, Data: data}}})
				if err == nil && resp.GetResponses()[0].GetStatus().GetCode() != 0 {
					err = status.ErrorProto(resp.GetResponses()[0].GetStatus())
				}
				errs <- err
			}
		}()
	}
	for i := 0; i < 24; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	got, err := readAll(t, e.bs, &bspb.ReadRequest{ResourceName: readName("", d)})
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, %v", len(got), err)
	}
}
