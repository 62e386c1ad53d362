package client

import (
	"bytes"
	"context"

	"io"
	"os"
	"syscall"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/kiln-build/kiln/cas/casclient"
	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/wrapper/decide"
	"github.com/kiln-build/kiln/wrapper/stats"
)

// compileAndStore is the cache-only miss: compile locally with the
// command that matches the remote one (the rebased invocation), and on
// success store the result under the action so that the next lookup, on
// any machine, hits. Failing to store is logged, not an error: the
// compile itself succeeded.
func (w *Wrapper) compileAndStore(ctx context.Context, ac repb.ActionCacheClient, cas *casclient.Client, act *action, path, name string) (int, error) {
	var stdout, stderr bytes.Buffer
	code, err := w.child().Run(path, decide.Argv(path, act.inv.Args), nil, io.MultiWriter(w.Stdout, &stdout), io.MultiWriter(w.Stderr, &stderr))
	if err != nil {
		return 0, err // could not run the compiler; fallback runs it and reports
	}
	stats.Inc(&w.delta.LocalCompiles, "cache_only")
	if code != 0 {
		return code, nil // compile errors are not cached
	}
	fn := act.digest.Function()
	res := &repb.ActionResult{ExitCode: 0}
	var blobs []casclient.Blob
	add := func(data []byte) *repb.Digest {
		d := digest.FromBytes(fn, data)
		blobs = append(blobs, casclient.Blob{Digest: d, Data: data})
		return d.Proto()
	}
	for _, o := range act.outputs {
		data, err := os.ReadFile(w.path(o.local))
		if err != nil {
			continue // an optional .dwo gcc did not write
		}
		res.OutputFiles = append(res.OutputFiles, &repb.OutputFile{Path: o.remote, Digest: add(data)})
	}
	res.StdoutDigest = add(stdout.Bytes())
	res.StderrDigest = add(stderr.Bytes())
	// The Action and Command, so that the entry can be inspected and
	// re-executed; not the toolchain (cache-only never executes).
	for _, b := range act.blobs[len(act.blobs)-2:] {
		blobs = append(blobs, b)
	}
	if err := w.upload(ctx, cas, blobs); err != nil {
		w.logf("cache-only: store %s: %v", act.digest, err)
		return 0, nil
	}
	if _, err := ac.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{
		InstanceName:   cas.Instance(),
		ActionDigest:   act.digest.Proto(),
		ActionResult:   res,
		DigestFunction: fn.Enum(),
	}); err != nil {
		w.logf("cache-only: update action result %s: %v", act.digest, err)
		return 0, nil
	}
	w.delta.CacheUploads++
	return 0, nil
}

// umask returns the client's umask: Umask when set, else the process's
// (read by setting and restoring it; a wrapper process is single-threaded
// when it writes outputs).
func (w *Wrapper) umask() os.FileMode {
	if w.Umask != nil {
		return *w.Umask
	}
	m := syscall.Umask(0)
	syscall.Umask(m)
	return os.FileMode(m)
}
