package worker

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kiln-build/kiln/api/workerpb"
	"github.com/kiln-build/kiln/cas/casclient"
	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/internal/rpcstatus"
	"github.com/kiln-build/kiln/worker/runner"
)

// errorResponse is the response of an action that failed before it ran.
func errorResponse(err error) *repb.ExecuteResponse {
	return &repb.ExecuteResponse{Status: status.Convert(err).Proto()}
}

// complete reports a lease's outcome, with the output blobs that travel
// with it (see inlineBlobs). A send error means the session is ending; the
// server then requeues the lease, so it is only logged.
func (w *worker) complete(s *session, lease string, resp *repb.ExecuteResponse, blobs []*workerpb.Blob) {
	data, err := proto.Marshal(resp)
	if err != nil {
		data, _ = proto.Marshal(errorResponse(status.Errorf(codes.Internal, "worker: encode response: %v", err)))
	}
	if err := s.send(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_LeaseUpdate{LeaseUpdate: &workerpb.LeaseUpdate{
		LeaseId: lease, Stage: workerpb.LeaseUpdate_COMPLETED, ExecuteResponse: data, OutputBlobs: blobs,
	}}}); err != nil {
		w.log.Debug("could not report a lease", "lease", lease, "err", err)
	}
}

// assignment is an Assignment after validation.
type assignment struct {
	fn           digest.Function
	actionDigest digest.Digest
	action       *repb.Action
	command      *repb.Command
	inputRoot    digest.Digest
	// inputDirs are serialized directories of the input tree that the
	// server sent along, not yet checked (fetchInputTree does).
	inputDirs [][]byte
}

// parseAssignment checks that the Action and Command bytes hash to the
// digests that name them, and parses them. Any mismatch is InvalidArgument.
func parseAssignment(a *workerpb.Assignment) (*assignment, error) {
	fn, err := digest.FunctionFromEnum(repb.DigestFunction_Value(a.GetDigestFunction()))
	if err != nil {
		return nil, err
	}
	adpb := &repb.Digest{}
	if err := proto.Unmarshal(a.GetActionDigest(), adpb); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "action digest does not parse: %v", err)
	}
	p := &assignment{fn: fn, action: &repb.Action{}, command: &repb.Command{}, inputDirs: a.GetInputDirectories()}
	if p.actionDigest, err = digest.FromProto(fn, adpb); err != nil {
		return nil, rpcstatus.Wrap(err, "action digest")
	}
	if got := digest.FromBytes(fn, a.GetAction()); got != p.actionDigest {
		return nil, status.Errorf(codes.InvalidArgument, "action %s: the bytes sent hash to %s", p.actionDigest, got)
	}
	if err := proto.Unmarshal(a.GetAction(), p.action); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "action %s does not parse: %v", p.actionDigest, err)
	}
	cd, err := digest.FromProto(fn, p.action.GetCommandDigest())
	if err != nil {
		return nil, rpcstatus.Wrapf(err, "action %s: command_digest", p.actionDigest)
	}
	if got := digest.FromBytes(fn, a.GetCommand()); got != cd {
		return nil, status.Errorf(codes.InvalidArgument, "command %s: the bytes sent hash to %s", cd, got)
	}
	if err := proto.Unmarshal(a.GetCommand(), p.command); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "command %s does not parse: %v", cd, err)
	}
	if p.inputRoot, err = digest.FromProto(fn, p.action.GetInputRootDigest()); err != nil {
		return nil, rpcstatus.Wrapf(err, "action %s: input_root_digest", p.actionDigest)
	}
	if err := validateCommand(p.command); err != nil {
		return nil, rpcstatus.Wrapf(err, "command %s", cd)
	}
	return p, nil
}

// validateCommand checks the paths the worker turns into host paths. The
// server checked them too; the worker does not rely on it.
func validateCommand(c *repb.Command) error {
	if len(c.GetArguments()) == 0 {
		return status.Error(codes.InvalidArgument, "arguments are empty")
	}
	if wd := c.GetWorkingDirectory(); wd != "" {
		if err := validateRelPath(wd); err != nil {
			return rpcstatus.Wrap(err, "working_directory")
		}
	}
	for _, list := range []struct {
		name    string
		paths   []string
		emptyOK bool
	}{
		{"output_paths", c.GetOutputPaths(), true},
		{"output_files", c.GetOutputFiles(), false},
		{"output_directories", c.GetOutputDirectories(), true},
	} {
		for _, p := range list.paths {
			if p == "" && list.emptyOK {
				continue // the working directory itself
			}
			if err := validateRelPath(p); err != nil {
				return rpcstatus.Wrap(err, list.name)
			}
		}
	}
	return nil
}

// validateRelPath accepts a relative slash-separated path without empty,
// "." or ".." segments.
func validateRelPath(p string) error {
	if p == "" || strings.HasPrefix(p, "/") || strings.ContainsRune(p, 0) {
		return status.Errorf(codes.InvalidArgument, "path %q is not a relative path", p)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return status.Errorf(codes.InvalidArgument, "path %q has a %q segment", p, seg)
		}
	}
	return nil
}

// timeout returns the action's timeout: its own, else the default, capped
// at the maximum. 0 means none.
func (w *worker) timeout(a *repb.Action) (time.Duration, error) {
	t := w.cfg.DefaultTimeout
	if pb := a.GetTimeout(); pb != nil {
		if err := pb.CheckValid(); err != nil || pb.AsDuration() < 0 {
			return 0, status.Errorf(codes.InvalidArgument, "action timeout %v is not a valid duration", pb)
		}
		if d := pb.AsDuration(); d > 0 {
			t = d
		}
	}
	if w.cfg.MaxTimeout > 0 && (t == 0 || t > w.cfg.MaxTimeout) {
		t = w.cfg.MaxTimeout
	}
	return t, nil
}

// buildDirName turns a lease id into a safe directory name, prefixed with a
// sequence number that makes it unique.
func (w *worker) buildDirName(lease string) string {
	b := []byte(lease)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return fmt.Sprintf("%d-%s", w.buildSeq.Add(1), b)
}

// execute runs one lease and returns its response and the output blobs to
// send with it, plus a cleanup that has the janitor remove the build
// directory (call it after reporting).
func (w *worker) execute(ctx context.Context, s *session, a *workerpb.Assignment) (*repb.ExecuteResponse, []*workerpb.Blob, func()) {
	md := &repb.ExecutedActionMetadata{Worker: w.cfg.Name, WorkerStartTimestamp: timestamppb.Now()}
	if q := a.GetQueuedUnixNanos(); q > 0 {
		md.QueuedTimestamp = timestamppb.New(time.Unix(0, q))
	}
	log := w.log.With("lease", a.GetLeaseId())
	if err := s.send(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_LeaseUpdate{LeaseUpdate: &workerpb.LeaseUpdate{
		LeaseId: a.GetLeaseId(), Stage: workerpb.LeaseUpdate_EXECUTING,
	}}}); err != nil {
		log.Debug("could not report a lease as executing", "err", err)
	}
	noCleanup := func() {}
	p, err := parseAssignment(a)
	if err != nil {
		log.Warn("bad assignment", "err", err)
		return errorResponse(err), nil, noCleanup
	}
	log = log.With("action", p.actionDigest.String())
	dir, err := w.dirs.take(w.buildDirName(a.GetLeaseId()))
	if err != nil {
		log.Error("could not make a build directory", "err", err)
		return errorResponse(err), nil, noCleanup
	}
	cleanup := func() {
		w.janitor.later(func(ctx context.Context) {
			if err := removeTree(dir.dir); err != nil {
				log.Error("could not remove a build directory", "dir", dir.dir, "err", err)
			}
			w.fillSpares(ctx) // replace the ones this lease used
		})
	}
	resp, blobs, err := w.run(ctx, p, a.GetInstanceName(), dir, md, s.maxOutputBlobBytes)
	if err != nil {
		resp = errorResponse(err)
	}
	md.WorkerCompletedTimestamp = timestamppb.Now()
	if resp.GetResult() != nil {
		log.Debug("action done", "exit_code", resp.GetResult().GetExitCode(), "status", codes.Code(resp.GetStatus().GetCode()).String(),
			"run_time", md.GetExecutionCompletedTimestamp().AsTime().Sub(md.GetExecutionStartTimestamp().AsTime()))
	} else {
		log.Info("action failed", "status", status.ErrorProto(resp.GetStatus()))
	}
	return resp, blobs, cleanup
}

// run does the work of one action in the fresh build directory dir. An error
// means no result (the command did not run, or its outputs could not be
// stored); otherwise the response holds the result and, for a timeout or a
// faulty output, a status. Outputs go to the CAS, except up to maxInline
// bytes of small ones, returned to be sent with the response.
func (w *worker) run(ctx context.Context, p *assignment, instance string, dir buildDir, md *repb.ExecutedActionMetadata, maxInline int64) (*repb.ExecuteResponse, []*workerpb.Blob, error) {
	timeout, err := w.timeout(p.action)
	if err != nil {
		return nil, nil, err
	}
	cl := casclient.New(w.cfg.Conn, instance, p.fn, w.maxBatch.Load())
	root := dir.root

	md.InputFetchStartTimestamp = timestamppb.Now()
	tree, err := fetchInputTree(ctx, cl, p.inputRoot, p.inputDirs)
	if err != nil {
		return nil, nil, err
	}
	if err := w.materialize(ctx, cl, tree, root); err != nil {
		return nil, nil, err
	}
	cmd := p.command
	wd := cmd.GetWorkingDirectory()
	wdHost, err := mkdirInRoot(root, wd)
	if err != nil {
		return nil, nil, rpcstatus.Wrap(err, "working directory")
	}
	// Directories leading up to the outputs are created before the run.
	for _, list := range [][]string{cmd.GetOutputPaths(), cmd.GetOutputFiles(), cmd.GetOutputDirectories()} {
		for _, o := range list {
			if o == "" {
				continue
			}
			if _, err := mkdirInRoot(root, parentOf(path.Join(wd, o))); err != nil {
				return nil, nil, rpcstatus.Wrapf(err, "output %q", o)
			}
		}
	}
	md.InputFetchCompletedTimestamp = timestamppb.Now()

	env := make([]string, len(cmd.GetEnvironmentVariables()))
	for i, v := range cmd.GetEnvironmentVariables() {
		env[i] = v.GetName() + "=" + v.GetValue()
	}
	platform := p.action.GetPlatform()
	if platform == nil {
		platform = cmd.GetPlatform()
	}
	req := runner.Request{
		Args:       cmd.GetArguments(),
		Env:        env,
		Dir:        wdHost,
		BuildDir:   root,
		StdoutPath: dir.stdout,
		StderrPath: dir.stderr,
		Timeout:    timeout,
		Platform:   platform.GetProperties(),
	}
	w.janitor.commandStarting()
	res, err := w.cfg.Runner.Run(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	md.ExecutionStartTimestamp = timestamppb.New(res.Started)
	md.ExecutionCompletedTimestamp = timestamppb.New(res.Finished)

	md.OutputUploadStartTimestamp = timestamppb.Now()
	result := &repb.ActionResult{ExitCode: int32(res.ExitCode), ExecutionMetadata: md}
	out := &outputs{
		fn: p.fn, root: root, wd: wd, format: cmd.GetOutputDirectoryFormat(), result: result,
		maxData: cl.MaxBatchBlob(), inlineLeft: maxInlineOutputBytes,
	}
	for _, std := range []struct {
		path string
		set  func(*repb.Digest)
	}{
		{req.StdoutPath, func(d *repb.Digest) { result.StdoutDigest = d }},
		{req.StderrPath, func(d *repb.Digest) { result.StderrDigest = d }},
	} {
		d, err := out.file(std.path)
		if err != nil {
			return nil, nil, err
		}
		std.set(d.Proto())
	}
	// A timed-out action's outputs are collected too: whatever it wrote
	// may help the user see how far it got.
	if err := out.collect(cmd); err != nil {
		return nil, nil, err
	}
	inline, rest := inlineBlobs(out.blobs, maxInline)
	if err := cl.UploadNew(ctx, rest); err != nil {
		return nil, nil, rpcstatus.Wrap(err, "upload outputs")
	}
	md.OutputUploadCompletedTimestamp = timestamppb.Now()

	resp := &repb.ExecuteResponse{Result: result}
	switch {
	case res.TimedOut:
		resp.Status = status.Newf(codes.DeadlineExceeded, "action %s timed out after %v", p.actionDigest, timeout).Proto()
	case out.problem != nil:
		resp.Status = status.Convert(out.problem).Proto()
	}
	return resp, inline, nil
}

// inlineBlobs splits the blobs of an action's outputs into those sent with
// its result (the server stores them in the CAS) and those uploaded to the
// CAS: blobs in memory go with the result, each digest once, while they fit
// in maxInline bytes; the empty blob goes nowhere (it is always present).
func inlineBlobs(blobs []casclient.Blob, maxInline int64) (inline []*workerpb.Blob, rest []casclient.Blob) {
	seen := map[digest.Digest]bool{}
	for _, b := range blobs {
		switch {
		case b.Digest.IsEmpty() || seen[b.Digest]:
		case b.Data != nil && b.Digest.Size() <= maxInline:
			seen[b.Digest] = true
			maxInline -= b.Digest.Size()
			ds, _ := proto.Marshal(b.Digest.Proto())
			inline = append(inline, &workerpb.Blob{Digest: ds, Data: b.Data})
		default:
			rest = append(rest, b)
		}
	}
	return inline, rest
}
