package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kiln-build/kiln/cas/digest"
)

// TestCCCorruptCacheEntry replaces the action cache entry of a compile with
// results a buggy client could have stored, which the server accepts since
// it cannot know what the compile must output: the wrapper ignores each,
// compiles again remotely (bypassing the cache), counts it, and the
// object still equals gcc's.
func TestCCCorruptCacheEntry(t *testing.T) {
	needGCC(t)
	addr := startKilnServer(t)
	dir := project(t)
	log := filepath.Join(t.TempDir(), "kiln.log")
	e := newCCEnv(t, addr, "KILN_FORCE_REMOTE=1", "KILN_LOG="+log)
	obj, dep := filepath.Join("obj", "a.o"), filepath.Join("obj", "a.d")
	args := compileArgs(dir, "a", obj, "-O2")
	wantObj, wantDep := compileLocally(t, dir, obj, dep, args...)
	compile := func() {
		t.Helper()
		os.Remove(filepath.Join(dir, obj))
		if _, stderr, code := e.run(dir, append([]string{"cc", "gcc"}, args...)...); code != 0 || stderr != "" {
			t.Fatalf("kiln cc: exit %d, stderr %q", code, stderr)
		}
		if gotObj, gotDep := readOutputs(t, dir, obj, dep); !bytes.Equal(gotObj, wantObj) || !bytes.Equal(gotDep, wantDep) {
			t.Fatalf("outputs differ from gcc's (object %d bytes, want %d)", len(gotObj), len(wantObj))
		}
	}
	compile()
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`action ([0-9a-f]{64})/(\d+): lookup NotFound`).FindSubmatch(data)
	if m == nil {
		t.Fatalf("no action digest in the wrapper's log:\n%s", data)
	}
	size, _ := strconv.ParseInt(string(m[2]), 10, 64)
	action, err := digest.New(digest.SHA256, string(m[1]), size)
	if err != nil {
		t.Fatal(err)
	}

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ac := repb.NewActionCacheClient(conn)
	garbage := []byte("this is not an object file")
	// In the CAS, so that the server finds the entry complete and serves it.
	gd := digest.FromBytes(digest.SHA256, garbage)
	if resp, err := repb.NewContentAddressableStorageClient(conn).BatchUpdateBlobs(context.Background(), &repb.BatchUpdateBlobsRequest{
		Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: gd.Proto(), Data: garbage}},
	}); err != nil || resp.GetResponses()[0].GetStatus().GetCode() != 0 {
		t.Fatalf("upload: %v %v", err, resp)
	}
	for _, tc := range []struct {
		name string
		res  *repb.ActionResult
	}{
		{"NoObject", &repb.ActionResult{ExitCode: 0}},
		{"ObjectUnderAnotherName", &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "kiln-out/9/other.o", Digest: gd.Proto()}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := ac.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: action.Proto(), ActionResult: tc.res}); err != nil {
				t.Fatalf("store the corrupt entry: %v", err)
			}
			before := e.stats()
			compile()
			after := e.stats()
			if after.CorruptResults != before.CorruptResults+1 || after.CacheMisses != before.CacheMisses+1 || len(after.Fallbacks) != 0 {
				t.Fatalf("stats before %+v, after %+v: want one more corrupt result and miss, no fallback", before, after)
			}
			// The recompile replaced the entry: the next compile is a plain hit.
			compile()
			if s := e.stats(); s.CacheHits != after.CacheHits+1 || s.CorruptResults != after.CorruptResults {
				t.Fatalf("stats after the repair %+v", s)
			}
		})
	}
}
