package actioncache_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kiln-build/kiln/cas"
	"github.com/kiln-build/kiln/cas/actioncache"
	"github.com/kiln-build/kiln/cas/casserver"
	"github.com/kiln-build/kiln/cas/memory"
)

func blob(data []byte) *repb.Digest {
	h := sha256.Sum256(data)
	return &repb.Digest{Hash: hex.EncodeToString(h[:]), SizeBytes: int64(len(data))}
}

type env struct {
	ac  repb.ActionCacheClient
	cas repb.ContentAddressableStorageClient
}

func newEnv(t *testing.T) *env {
	store := cas.NewVerifyingStore(cas.NewEmptyBlobStore(memory.New(1 << 30)))
	gs := grpc.NewServer()
	repb.RegisterContentAddressableStorageServer(gs, casserver.NewCAS(store, 4<<20))
	repb.RegisterActionCacheServer(gs, actioncache.NewService(actioncache.New(memory.New(1<<20), store)))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(l)
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); gs.Stop() })
	return &env{ac: repb.NewActionCacheClient(conn), cas: repb.NewContentAddressableStorageClient(conn)}
}

func (e *env) upload(t *testing.T, blobs ...[]byte) {
	t.Helper()
	req := &repb.BatchUpdateBlobsRequest{}
	for _, b := range blobs {
		req.Requests = append(req.Requests, &repb.BatchUpdateBlobsRequest_Request{Digest: blob(b), Data: b})
	}
	resp, err := e.cas.BatchUpdateBlobs(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.GetResponses() {
		if r.GetStatus().GetCode() != 0 {
			t.Fatal(r.GetStatus())
		}
	}
}

func requireCode(t *testing.T, err error, want codes.Code, part string) {
	t.Helper()
	if status.Code(err) != want || !strings.Contains(status.Convert(err).Message(), part) {
		t.Fatalf("got %v, want %v mentioning %q", err, want, part)
	}
}

func TestActionCache(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	obj, out, errText := []byte("object file"), []byte("stdout text"), []byte("warning: x")
	fileInTree := []byte("file inside an output directory")
	tree, _ := proto.Marshal(&repb.Tree{Root: &repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: blob(fileInTree)}}}})
	action := blob([]byte("action 1"))
	result := &repb.ActionResult{
		OutputFiles:       []*repb.OutputFile{{Path: "out/a.o", Digest: blob(obj)}},
		OutputDirectories: []*repb.OutputDirectory{{Path: "out/dir", TreeDigest: blob(tree)}},
		StdoutDigest:      blob(out),
		StderrDigest:      blob(errText),
	}

	t.Run("Miss", func(t *testing.T) {
		_, err := e.ac.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action})
		requireCode(t, err, codes.NotFound, "")
	})
	t.Run("DanglingHitIsAMiss", func(t *testing.T) {
		if _, err := e.ac.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: action, ActionResult: result}); err != nil {
			t.Fatal(err)
		}
		_, err := e.ac.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action})
		requireCode(t, err, codes.NotFound, "no longer in the CAS")
		e.upload(t, obj, out, errText, tree)
		// The tree is there, but a file inside it is not.
		_, err = e.ac.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action})
		requireCode(t, err, codes.NotFound, blob(fileInTree).Hash)
	})
	t.Run("HitWithInlining", func(t *testing.T) {
		e.upload(t, fileInTree)
		got, err := e.ac.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action, InlineStdout: true, InlineOutputFiles: []string{"out/a.o"}})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.GetStdoutRaw(), out) || len(got.GetStderrRaw()) != 0 || !bytes.Equal(got.GetOutputFiles()[0].GetContents(), obj) {
			t.Fatalf("inlining: %v", got)
		}
	})
	t.Run("InstancesAreSeparate", func(t *testing.T) {
		_, err := e.ac.GetActionResult(ctx, &repb.GetActionResultRequest{InstanceName: "other", ActionDigest: action})
		requireCode(t, err, codes.NotFound, "")
		if _, err := e.ac.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{InstanceName: "other", ActionDigest: action, ActionResult: &repb.ActionResult{ExitCode: 3}}); err != nil {
			t.Fatal(err)
		}
		got, err := e.ac.GetActionResult(ctx, &repb.GetActionResultRequest{InstanceName: "other", ActionDigest: action})
		if err != nil || got.GetExitCode() != 3 {
			t.Fatalf("other instance: %v %v", got, err)
		}
		got, err = e.ac.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action})
		if err != nil || got.GetExitCode() != 0 {
			t.Fatalf("default instance changed: %v %v", got, err)
		}
	})
}

func TestUpdateRejectsBadResults(t *testing.T) {
	e := newEnv(t)
	ok := blob([]byte("x"))
	for _, tc := range []struct {
		name   string
		action *repb.Digest
		result *repb.ActionResult
		part   string
	}{
		{"BadActionDigest", &repb.Digest{Hash: "xyz"}, &repb.ActionResult{}, "action_digest"},
		{"NoResult", ok, nil, "action_result is missing"},
		{"MalformedOutputDigest", ok, &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "a", Digest: &repb.Digest{Hash: strings.Repeat("Z", 64)}}}}, "output_files[0].digest"},
		{"MalformedStdoutDigest", ok, &repb.ActionResult{StdoutDigest: &repb.Digest{Hash: ok.Hash, SizeBytes: -4}}, "stdout_digest"},
		{"MalformedTreeDigest", ok, &repb.ActionResult{OutputDirectories: []*repb.OutputDirectory{{Path: "d"}}}, "tree_digest"},
		{"AbsolutePath", ok, &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "/etc/passwd", Digest: ok}}}, "absolute"},
		{"EscapingPath", ok, &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "a/../../b", Digest: ok}}}, `".." segment`},
		{"DuplicatePath", ok, &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "a", Digest: ok}, {Path: "a", Digest: ok}}}, "appears twice"},
		{"AbsoluteSymlink", ok, &repb.ActionResult{OutputSymlinks: []*repb.OutputSymlink{{Path: "l", Target: "/etc"}}}, "absolute target"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.ac.UpdateActionResult(context.Background(), &repb.UpdateActionResultRequest{ActionDigest: tc.action, ActionResult: tc.result})
			requireCode(t, err, codes.InvalidArgument, tc.part)
			if tc.action.GetSizeBytes() >= 0 && len(tc.action.GetHash()) == 64 {
				_, err = e.ac.GetActionResult(context.Background(), &repb.GetActionResultRequest{ActionDigest: tc.action})
				requireCode(t, err, codes.NotFound, "")
			}
		})
	}
}
