package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	lrpb "cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/kiln-build/kiln/cas/casclient"
	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/internal/grpcaddr"
	"github.com/kiln-build/kiln/internal/rpcstatus"
	"github.com/kiln-build/kiln/wrapper/cmdline"
	"github.com/kiln-build/kiln/wrapper/decide"
	"github.com/kiln-build/kiln/wrapper/stats"
	"github.com/kiln-build/kiln/wrapper/toolchain"
)

const (
	// workDir is the remote command's working directory inside the input
	// root. It holds the preprocessed file, so it exists; it is not a path
	// the toolchain uses, nor one the hermetic sandbox mounts over.
	workDir = "kiln-work"
	// inputBase is the preprocessed file's name: fixed, so that the same
	// code compiled from different files shares one action (gcc takes the
	// source name from the line markers, not from this name).
	inputBase = "input"
	// maxWaits bounds the WaitExecution calls after broken streams.
	maxWaits = 5
)

// Platform is the action's platform: sorted by name as REAPI requires.
var Platform = &repb.Platform{Properties: []*repb.Platform_Property{
	{Name: "ISA", Value: "x86-64"},
	{Name: "OSFamily", Value: "linux"},
	{Name: "sandbox", Value: "hermetic"},
}}

// remoteError is a remote failure with the reason stats count it under.
type remoteError struct {
	reason string
	err    error
}

func (e *remoteError) Error() string { return e.err.Error() }
func (e *remoteError) Unwrap() error { return e.err }

// classify turns err into a remoteError, choosing the reason from its code.
func classify(ctx context.Context, err error) *remoteError {
	var re *remoteError
	if errors.As(err, &re) {
		return re
	}
	if ctx.Err() != nil {
		return &remoteError{"timeout", err}
	}
	switch rpcstatus.Code(err) {
	case codes.DeadlineExceeded:
		return &remoteError{"timeout", err}
	case codes.Unavailable:
		return &remoteError{"unavailable", err}
	}
	return &remoteError{"remote_error", err}
}

// output is one file of the remote compile.
type output struct {
	local  string // path the build expects, as written on the command line
	remote string // path relative to workDir
}

// action is everything one remote compile needs.
type action struct {
	inv      *cmdline.Invocation // the (rebased) invocation
	tree     *toolchain.Tree     // input root
	base     *toolchain.Tree     // the toolchain alone (tree without the source)
	blobs    []casclient.Blob    // of the input root, the Command and the Action
	digest   digest.Digest       // of the Action
	outputs  []output
	ppStderr []byte   // the preprocessor's warnings, replayed on success
	includes []string // the files the preprocessor read (direct mode)
	depData  []byte   // the dependency file it wrote (direct mode)
}

// remoteOutputs names the compile's outputs in the action: relative names
// stay (gcc records -gsplit-dwarf's .dwo name as spelled); others go to
// kiln-out/ under the working directory. The object comes first.
func remoteOutputs(inv *cmdline.Invocation) []output {
	var out []output
	for i, o := range inv.RemoteOutputs() {
		r := filepath.ToSlash(filepath.Clean(o))
		if !filepath.IsLocal(o) {
			r = fmt.Sprintf("kiln-out/%d/%s", i, filepath.Base(o))
		}
		out = append(out, output{local: o, remote: r})
	}
	return out
}

// remote runs the remote path of Run.
func (w *Wrapper) remote(ctx context.Context, path, name string, args []string, inv *cmdline.Invocation) int {
	cwd, err := w.Dir, error(nil)
	if cwd == "" {
		cwd, err = os.Getwd()
	}
	if err != nil {
		return w.fallback(path, name, args, "local_io", err)
	}
	if w.Config.BaseDir != "" {
		inv = inv.Rebase(w.Config.BaseDir, cwd)
	}
	ctx, cancel := context.WithTimeout(ctx, w.Config.ExecuteTimeout)
	defer cancel()
	tree, err := toolchain.LoadOrCapture(ctx, w.CacheDir, path)
	if err != nil {
		err = &remoteError{"toolchain", err}
		return w.fallback(path, name, args, classify(ctx, err).reason, err)
	}

	// The connection, made when first needed: a compile whose
	// preprocessing fails never dials.
	var conn *grpc.ClientConn
	var cas *casclient.Client
	release := func() {}
	defer func() { release() }()
	connect := func() error {
		if conn != nil {
			return nil
		}
		dial := w.Dial
		if dial == nil {
			dial = dialOnce
		}
		c, rel, err := dial(w.Config.Server)
		if err != nil {
			return &remoteError{"config", err}
		}
		release = rel
		if err := waitReady(ctx, c, w.Config.ConnectTimeout); err != nil {
			return err
		}
		limit, err := batchLimit(ctx, c, w.Config.Instance)
		if err != nil {
			return err
		}
		conn, cas = c, casclient.New(c, w.Config.Instance, tree.Root.Function(), limit)
		return nil
	}

	key := w.directKey(tree, inv, cwd)
	if e := w.directLookup(key); e != nil {
		if err := connect(); err != nil {
			return w.fallback(path, name, args, classify(ctx, err).reason, err)
		}
		if code, ok := w.directHit(ctx, repb.NewActionCacheClient(conn), cas, e, inv); ok {
			w.record()
			return code
		}
	}

	act, err := w.prepare(path, cwd, tree, inv)
	if err != nil {
		return w.fallback(path, name, args, classify(ctx, err).reason, err)
	}
	if act == nil {
		// The preprocessor failed: let the real compile say why.
		return w.local(path, name, args, ReasonPreprocessFailed)
	}
	if err := connect(); err != nil {
		return w.fallback(path, name, args, classify(ctx, err).reason, err)
	}
	exit, err := w.execute(ctx, conn, cas, act, path, name)
	if err != nil {
		return w.fallback(path, name, args, classify(ctx, err).reason, err)
	}
	if exit == 0 {
		w.directRecord(key, act)
	}
	w.record()
	if exit < 0 {
		return w.runLocal(path, name, args)
	}
	return exit
}

// batchLimits caches each connection's batch limit (the daemon keeps its
// connections; a wrapper process has one).
var batchLimits sync.Map // batchKey -> int64

type batchKey struct {
	conn     *grpc.ClientConn
	instance string
}

// batchLimit returns the server's max_batch_total_size_bytes for instance
// (0: no limit), asked once per connection: batches must fit the server's
// limit, not gRPC's default message size.
func batchLimit(ctx context.Context, conn *grpc.ClientConn, instance string) (int64, error) {
	key := batchKey{conn, instance}
	if v, ok := batchLimits.Load(key); ok {
		return v.(int64), nil
	}
	caps, err := casclient.FetchCapabilities(ctx, conn, instance)
	if err != nil {
		return 0, err
	}
	n := caps.GetCacheCapabilities().GetMaxBatchTotalSizeBytes()
	batchLimits.Store(key, n)
	return n, nil
}

// dialOnce is the Dial of a wrapper process: one connection per compile.
func dialOnce(addr string) (*grpc.ClientConn, func(), error) {
	conn, err := grpcaddr.Dial(addr)
	if err != nil {
		return nil, nil, err
	}
	return conn, func() { conn.Close() }, nil
}

// waitReady connects conn, failing after timeout: a server that accepts
// TCP connections and never speaks HTTP/2 must not hang the build.
func waitReady(ctx context.Context, conn *grpc.ClientConn, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn.Connect()
	for {
		s := conn.GetState()
		if s == connectivity.Ready {
			return nil
		}
		if !conn.WaitForStateChange(ctx, s) {
			return status.Errorf(codes.Unavailable, "connect to %s: no connection within %v (last state %s)", conn.Target(), timeout, s)
		}
	}
}

// prepare preprocesses the source and builds the action. A nil action
// with a nil error means the preprocessor failed.
func (w *Wrapper) prepare(path, cwd string, tree *toolchain.Tree, inv *cmdline.Invocation) (*action, error) {
	fn := tree.Root.Function()
	act := &action{inv: inv, outputs: remoteOutputs(inv)}
	var data []byte
	var err error
	// source is the remote compile's input as its command line names it;
	// inputPath is where it is in the input root.
	iName := inputBase + inv.Language.PreprocessedExt()
	source, inputPath := iName, workDir+"/"+iName
	directives := false
	if inv.Language.IsPreprocessed() {
		if data, err = os.ReadFile(w.path(inv.Source)); err != nil {
			return nil, nil
		}
	} else {
		if s, p, ok := directivesInput(inv, w.Config.BaseDir); ok {
			if data, ok = w.preprocess(act, path, inv, true); ok {
				directives, source, inputPath = true, s, p
			}
		}
		if !directives {
			var ok bool
			if data, ok = w.preprocess(act, path, inv, false); !ok {
				return nil, nil
			}
		}
		act.includes = includedFiles(data)
		if inv.DepFile != "" {
			act.depData, _ = os.ReadFile(w.path(inv.DepFile))
		}
	}
	prefixMap := ""
	if w.Config.BaseDir != "" {
		data = cmdline.ReplaceWorkingDirectory(data, w.Config.BaseDir)
		if bytes.Contains(data, []byte(w.Config.BaseDir)) {
			prefixMap = inv.DebugPrefixMap() // checkout-specific anyway; see RemoteCompileArgs
		}
	}
	input, err := tree.WithFiles(toolchain.File{Path: inputPath, Data: data, Digest: digest.FromBytes(fn, data)})
	if err != nil {
		return nil, &remoteError{"toolchain", err}
	}
	act.tree, act.base = input, tree

	var remotePaths []string
	for _, o := range act.outputs {
		remotePaths = append(remotePaths, o.remote)
	}
	objectName := act.outputs[0].remote
	sort.Strings(remotePaths)
	argv := []string{tree.Compiler}
	if prefixMap != "" {
		argv = append(argv, prefixMap)
	}
	if directives {
		argv = append(argv, inv.RemoteSourceArgs(source, objectName, "/"+workDir, cwd)...)
	} else {
		argv = append(argv, inv.RemoteCompileArgs(source, objectName)...)
	}
	var env []*repb.Command_EnvironmentVariable
	if len(tree.LibraryPath) > 0 {
		env = append(env, &repb.Command_EnvironmentVariable{Name: "LD_LIBRARY_PATH", Value: strings.Join(tree.LibraryPath, ":")})
	}
	env = append(env, &repb.Command_EnvironmentVariable{Name: "PATH", Value: tree.PathEnv})
	cmd := &repb.Command{
		Arguments:            argv,
		EnvironmentVariables: env,
		OutputFiles:          remotePaths,
		OutputPaths:          remotePaths,
		WorkingDirectory:     workDir,
		Platform:             Platform,
	}
	cmdData, err := proto.MarshalOptions{Deterministic: true}.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	cmdDigest := digest.FromBytes(fn, cmdData)
	a := &repb.Action{
		CommandDigest:   cmdDigest.Proto(),
		InputRootDigest: input.Root.Proto(),
		Timeout:         durationpb.New(w.Config.ExecuteTimeout),
		Platform:        Platform,
	}
	aData, err := proto.MarshalOptions{Deterministic: true}.Marshal(a)
	if err != nil {
		return nil, err
	}
	act.digest = digest.FromBytes(fn, aData)
	act.blobs = append(input.Blobs(), casclient.Blob{Digest: cmdDigest, Data: cmdData}, casclient.Blob{Digest: act.digest, Data: aData})
	return act, nil
}

// directivesInput says whether inv's remote compile gets source
// preprocessed with -fdirectives-only (cmdline.WantsDirectivesOnly; not
// with base_dir, whose rewriting works on fully preprocessed files), and
// if so the source's name on the remote command line (as written locally:
// gcc names the compilation unit after it) and its place in the input
// root: under the working directory, or at its absolute path from the
// root of the hermetic sandbox.
func directivesInput(inv *cmdline.Invocation, baseDir string) (source, inputPath string, ok bool) {
	if baseDir != "" || !inv.WantsDirectivesOnly() {
		return "", "", false
	}
	p := filepath.ToSlash(filepath.Clean(inv.Source))
	if filepath.IsAbs(p) {
		p = strings.TrimPrefix(p, "/")
	} else {
		p = workDir + "/" + p
	}
	if !filepath.IsLocal(p) || strings.HasPrefix(p, "kiln-out/") {
		return "", "", false
	}
	return inv.Source, p, true
}

// preprocess runs the local preprocessor for act and returns its output,
// read from its stdout: no file is made for it (on ext4 without a journal,
// each inode created while a build deletes many others cost 0.3-0.5 ms of
// CPU, and a temporary directory and file per compile made two). False means it
// failed (the caller then lets the real compile report why). With
// directives, only directives are processed (-fdirectives-only) and gcc's
// built-in definitions, which the remote compiler makes itself, are cut
// off the front.
func (w *Wrapper) preprocess(act *action, path string, inv *cmdline.Invocation, directives bool) ([]byte, bool) {
	args := inv.PreprocessArgs("-")
	if directives {
		args = append([]string{"-fdirectives-only"}, args...)
	}
	var stdout, stderr bytes.Buffer
	code, err := w.child().Run(path, decide.Argv(path, args), nil, &stdout, &stderr)
	if err != nil || code != 0 {
		return nil, false
	}
	data := stdout.Bytes()
	if directives {
		i := bytes.Index(data, []byte("\n# 0 \"<command-line>\"\n"))
		if i < 0 {
			return nil, false
		}
		data = data[i+1:]
	}
	act.ppStderr = stderr.Bytes()
	return data, true
}

// lookup asks the action cache for act's result, with stdout, stderr and
// the outputs inlined (the server inlines what fits).
func (w *Wrapper) lookup(ctx context.Context, ac repb.ActionCacheClient, cas *casclient.Client, act *action) (*repb.ActionResult, error) {
	inline := make([]string, len(act.outputs))
	for i, o := range act.outputs {
		inline[i] = o.remote
	}
	res, err := ac.GetActionResult(ctx, &repb.GetActionResultRequest{
		InstanceName:      cas.Instance(),
		ActionDigest:      act.digest.Proto(),
		InlineStdout:      true,
		InlineStderr:      true,
		InlineOutputFiles: inline,
		DigestFunction:    act.digest.Function().Enum(),
	})
	w.logf("action %s: lookup %s", act.digest, status.Code(err))
	return res, err
}

// execute looks the action up, runs it on a miss, and writes the result.
func (w *Wrapper) execute(ctx context.Context, conn *grpc.ClientConn, cas *casclient.Client, act *action, path, name string) (int, error) {
	ac := repb.NewActionCacheClient(conn)
	res, err := w.lookup(ctx, ac, cas, act)
	switch {
	case err == nil:
		files, err := w.fetch(ctx, cas, act, res)
		if err == nil {
			w.delta.CacheHits++
			return w.finish(act, res, files)
		}
		if rpcstatus.Code(err) != codes.Internal {
			return 0, err
		}
		// Wrong bytes in the cache: run the action again, bypassing it.
		w.delta.CorruptResults++
		w.logf("action %s: cached result is corrupt, executing again: %v", act.digest, err)
	case status.Code(err) == codes.NotFound:
	default:
		return 0, rpcstatus.Wrap(err, "get action result")
	}
	w.delta.CacheMisses++
	if w.Config.CacheOnly {
		return w.compileAndStore(ctx, ac, cas, act, path, name)
	}
	if err := w.uploadAction(ctx, cas, act); err != nil {
		return 0, err
	}
	resp, err := w.run(ctx, conn, cas.Instance(), act.digest, res != nil)
	if err != nil {
		return 0, err
	}
	res = resp.GetResult()
	if resp.GetCachedResult() {
		w.delta.CacheHits++
		w.delta.CacheMisses--
	} else {
		worker := res.GetExecutionMetadata().GetWorker()
		if worker == "" {
			worker = "unknown"
		}
		stats.Inc(&w.delta.RemoteCompiles, worker)
	}
	files, err := w.fetch(ctx, cas, act, res)
	if err != nil {
		if rpcstatus.Code(err) == codes.Internal {
			w.delta.CorruptResults++
			return 0, &remoteError{"corrupt_result", err}
		}
		return 0, err
	}
	return w.finish(act, res, files)
}

// uploadAction sends the blobs of act the CAS lacks: after the first
// compile with a toolchain, only the preprocessed file, its directories,
// the Command and the Action. When toolchain blobs are missing (the first
// compiles against a new cluster), the user's wrapper processes take turns
// under a lock per toolchain and ask again once they hold it, so that with
// make -j16 the toolchain goes up once, not sixteen times.
func (w *Wrapper) uploadAction(ctx context.Context, cas *casclient.Client, act *action) error {
	missing, err := findMissing(ctx, cas, act.blobs)
	if err != nil {
		return err
	}
	shared := false
	for _, b := range act.base.Blobs() {
		shared = shared || missing[b.Digest]
	}
	if shared {
		unlock, err := toolchain.Lock(ctx, filepath.Join(w.CacheDir, "upload-"+act.base.Root.Hash()+".lock"))
		if err != nil {
			return err
		}
		defer unlock()
		if missing, err = findMissing(ctx, cas, act.blobs); err != nil {
			return err
		}
	}
	return w.send(ctx, cas, act.blobs, missing)
}

// upload sends the blobs the CAS lacks.
func (w *Wrapper) upload(ctx context.Context, cas *casclient.Client, blobs []casclient.Blob) error {
	missing, err := findMissing(ctx, cas, blobs)
	if err != nil {
		return err
	}
	return w.send(ctx, cas, blobs, missing)
}

// findMissing returns the digests of blobs that the CAS lacks.
func findMissing(ctx context.Context, cas *casclient.Client, blobs []casclient.Blob) (map[digest.Digest]bool, error) {
	ds := make([]digest.Digest, len(blobs))
	for i, b := range blobs {
		ds[i] = b.Digest
	}
	missing, err := cas.FindMissing(ctx, ds)
	if err != nil {
		return nil, rpcstatus.Wrap(err, "find missing blobs")
	}
	set := make(map[digest.Digest]bool, len(missing))
	for _, d := range missing {
		set[d] = true
	}
	return set, nil
}

// send uploads the blobs whose digests are in missing, each once.
func (w *Wrapper) send(ctx context.Context, cas *casclient.Client, blobs []casclient.Blob, missing map[digest.Digest]bool) error {
	var todo []casclient.Blob
	for _, b := range blobs {
		if missing[b.Digest] {
			todo = append(todo, b)
			delete(missing, b.Digest)
			w.delta.BytesUp += b.Digest.Size()
		}
	}
	if len(todo) == 0 {
		return nil
	}
	return rpcstatus.Wrap(cas.Upload(ctx, todo), "upload")
}

// run executes the action and follows its operation to the end,
// reconnecting with WaitExecution when the stream breaks.
func (w *Wrapper) run(ctx context.Context, conn *grpc.ClientConn, instance string, d digest.Digest, skipCache bool) (*repb.ExecuteResponse, error) {
	exec := repb.NewExecutionClient(conn)
	stream, err := exec.Execute(ctx, &repb.ExecuteRequest{
		InstanceName:    instance,
		ActionDigest:    d.Proto(),
		SkipCacheLookup: skipCache,
		DigestFunction:  d.Function().Enum(),
	})
	if err != nil {
		return nil, rpcstatus.Wrap(err, "execute")
	}
	opName := ""
	waits := 0
	for {
		op, err := stream.Recv()
		if err == nil {
			opName = op.GetName()
			if op.GetDone() {
				return operationResponse(op)
			}
			continue
		}
		if ctx.Err() != nil {
			return nil, rpcstatus.FromContext(ctx)
		}
		if opName == "" || waits >= maxWaits || (err != io.EOF && rpcstatus.Code(err) != codes.Unavailable && rpcstatus.Code(err) != codes.Internal) {
			if err == io.EOF {
				err = status.Error(codes.Unavailable, "the execute stream ended before the operation was done")
			}
			return nil, rpcstatus.Wrap(err, "execute")
		}
		waits++
		stream, err = exec.WaitExecution(ctx, &repb.WaitExecutionRequest{Name: opName})
		if err != nil {
			return nil, rpcstatus.Wrap(err, "wait execution")
		}
	}
}

// operationResponse extracts the ExecuteResponse of a done operation. An
// infrastructure failure (status not OK) is an error; a failed compile
// (non-zero exit) is not.
func operationResponse(op *lrpb.Operation) (*repb.ExecuteResponse, error) {
	if e := op.GetError(); e != nil {
		return nil, rpcstatus.Wrap(status.FromProto(e).Err(), "operation")
	}
	resp := &repb.ExecuteResponse{}
	if err := op.GetResponse().UnmarshalTo(resp); err != nil {
		return nil, status.Errorf(codes.Internal, "operation %s: response: %v", op.GetName(), err)
	}
	if st := resp.GetStatus(); st.GetCode() != int32(codes.OK) {
		return nil, rpcstatus.Wrap(status.FromProto(st).Err(), "execute")
	}
	if resp.GetResult() == nil {
		return nil, status.Errorf(codes.Internal, "operation %s: no result", op.GetName())
	}
	return resp, nil
}

// fetched is the verified content of an ActionResult.
type fetched struct {
	files          map[string][]byte // by remote path
	executable     map[string]bool
	stdout, stderr []byte
}

// fetch reads every output, stdout and stderr of res into memory,
// checking each against its digest (Internal on a mismatch), and checks
// that a successful compile produced its object.
func (w *Wrapper) fetch(ctx context.Context, cas *casclient.Client, act *action, res *repb.ActionResult) (*fetched, error) {
	fn := act.digest.Function()
	f := &fetched{files: map[string][]byte{}, executable: map[string]bool{}}
	read := func(pb *repb.Digest, inline []byte, what string) ([]byte, error) {
		if pb == nil {
			return inline, nil
		}
		d, err := digest.FromProto(fn, pb)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "%s: %v", what, err)
		}
		if inline != nil || d.IsEmpty() {
			if got := digest.FromBytes(fn, inline); got != d {
				return nil, status.Errorf(codes.Internal, "%s: inlined data is %s, want %s", what, got, d)
			}
			return inline, nil
		}
		data, err := cas.ReadBlob(ctx, d)
		if err != nil {
			return nil, rpcstatus.Wrap(err, what)
		}
		w.delta.BytesDown += int64(len(data))
		return data, nil
	}
	var err error
	if f.stdout, err = read(res.GetStdoutDigest(), res.GetStdoutRaw(), "stdout"); err != nil {
		return nil, err
	}
	if f.stderr, err = read(res.GetStderrDigest(), res.GetStderrRaw(), "stderr"); err != nil {
		return nil, err
	}
	for _, of := range res.GetOutputFiles() {
		data, err := read(of.GetDigest(), of.GetContents(), "output "+of.GetPath())
		if err != nil {
			return nil, err
		}
		f.files[of.GetPath()] = data
		f.executable[of.GetPath()] = of.GetIsExecutable()
	}
	if res.GetExitCode() == 0 {
		if _, ok := f.files[act.outputs[0].remote]; !ok {
			return nil, status.Errorf(codes.Internal, "the compile succeeded but sent no %s", act.outputs[0].remote)
		}
	}
	return f, nil
}

// finish writes the outputs where the build expects them (each
// atomically), replays stdout and stderr and returns the exit code; -1
// asks for a local rerun of a failed compile.
func (w *Wrapper) finish(act *action, res *repb.ActionResult, f *fetched) (int, error) {
	if res.GetExitCode() == 0 {
		for _, o := range act.outputs {
			data, ok := f.files[o.remote]
			if !ok {
				continue // an optional .dwo gcc did not write
			}
			if err := writeAtomic(w.path(o.local), data, f.executable[o.remote], w.umask()); err != nil {
				return 0, &remoteError{"local_io", err}
			}
		}
	} else {
		// A compile error. The worker's diagnostics lack the source lines
		// (it only has the .i) and the local locale's quotes, so the error
		// the user reads comes from a local run, which also rules out a
		// broken worker. Counted as remote_failed_compiles.
		w.delta.RemoteFailedCompiles++
		return -1, nil
	}
	w.Stderr.Write(act.ppStderr)
	w.Stdout.Write(f.stdout)
	w.Stderr.Write(f.stderr)
	return int(res.GetExitCode()), nil
}

// writeAtomic replaces path with data, with gcc's permissions under
// umask: readers see the old file or the whole new one.
func writeAtomic(path string, data []byte, executable bool, umask os.FileMode) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	t, err := os.CreateTemp(dir, "."+base+".kiln-*")
	if err != nil {
		return err
	}
	mode := os.FileMode(0o666) // what gcc and as create
	if executable {
		mode = 0o777
	}
	_, err = t.Write(data)
	if err == nil {
		err = t.Chmod(mode &^ umask)
	}
	if cerr := t.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(t.Name(), path)
	}
	if err != nil {
		os.Remove(t.Name())
	}
	return err
}
