package execution

import (
	"context"
	"sort"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kiln-build/kiln/cas"
	"github.com/kiln-build/kiln/cas/actioncache"
	"github.com/kiln-build/kiln/cas/casserver"
	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/cas/inputtree"
	"github.com/kiln-build/kiln/internal/rpcstatus"
	"github.com/kiln-build/kiln/scheduler"
)

// loaded is an Execute request after validation: the Action and Command
// parsed, their bytes kept for the worker.
type loaded struct {
	fn           digest.Function
	actionDigest digest.Digest
	action       *repb.Action
	command      *repb.Command
	actionBytes  []byte
	commandBytes []byte
	inputRoot    digest.Digest
	platform     []scheduler.Property
}

// missingError returns FAILED_PRECONDITION with a PreconditionFailure that
// lists each missing blob as a MISSING violation with subject
// "blobs/{hash}/{size}", which is what makes Bazel upload them again.
func missingError(what string, ds []digest.Digest) error {
	pf := &errdetails.PreconditionFailure{}
	for _, d := range ds {
		pf.Violations = append(pf.Violations, &errdetails.PreconditionFailure_Violation{
			Type: "MISSING", Subject: d.Subject(), Description: what + " is not in the CAS",
		})
	}
	s := status.Newf(codes.FailedPrecondition, "%s: %d blob(s) missing from the CAS, first %s", what, len(ds), ds[0])
	if ds, err := s.WithDetails(pf); err == nil {
		s = ds
	}
	return s.Err()
}

// readBlob reads a blob that must exist; NotFound becomes a MISSING
// precondition failure.
func readBlob(ctx context.Context, store cas.BlobStore, what string, d digest.Digest) ([]byte, error) {
	data, err := casserver.ReadBlob(ctx, store, d)
	if rpcstatus.IsNotFound(err) {
		return nil, missingError(what, []digest.Digest{d})
	}
	return data, rpcstatus.Wrap(err, what)
}

// load reads and validates the Action and its Command.
func load(ctx context.Context, store cas.BlobStore, fn digest.Function, actionDigest digest.Digest) (*loaded, error) {
	l := &loaded{fn: fn, actionDigest: actionDigest, action: &repb.Action{}, command: &repb.Command{}}
	var err error
	if l.actionBytes, err = readBlob(ctx, store, "action", actionDigest); err != nil {
		return nil, err
	}
	if err := proto.Unmarshal(l.actionBytes, l.action); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "action %s does not parse: %v", actionDigest, err)
	}
	cmdDigest, err := digest.FromProto(fn, l.action.GetCommandDigest())
	if err != nil {
		return nil, rpcstatus.Wrap(err, "action command_digest")
	}
	if l.inputRoot, err = digest.FromProto(fn, l.action.GetInputRootDigest()); err != nil {
		return nil, rpcstatus.Wrap(err, "action input_root_digest")
	}
	if t := l.action.GetTimeout(); t != nil && (t.CheckValid() != nil || t.AsDuration() < 0) {
		return nil, status.Errorf(codes.InvalidArgument, "action timeout %v is not a valid duration", t)
	}
	if l.commandBytes, err = readBlob(ctx, store, "command", cmdDigest); err != nil {
		return nil, err
	}
	if err := proto.Unmarshal(l.commandBytes, l.command); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "command %s does not parse: %v", cmdDigest, err)
	}
	if err := validateCommand(l.command); err != nil {
		return nil, rpcstatus.Wrapf(err, "command %s", cmdDigest)
	}
	// REAPI 2.2 moved the platform to the Action; older clients put it in
	// the Command. The Action's wins when both are set.
	platform := l.action.GetPlatform()
	if platform == nil {
		platform = l.command.GetPlatform()
	}
	if l.platform, err = parsePlatform(platform); err != nil {
		return nil, err
	}
	return l, nil
}

// validateCommand checks what a worker will turn into paths and a process.
func validateCommand(c *repb.Command) error {
	if len(c.GetArguments()) == 0 || c.GetArguments()[0] == "" {
		return status.Error(codes.InvalidArgument, "arguments are empty")
	}
	seen := map[string]bool{}
	for _, v := range c.GetEnvironmentVariables() {
		if v.GetName() == "" || seen[v.GetName()] {
			return status.Errorf(codes.InvalidArgument, "environment variable %q is empty or repeated", v.GetName())
		}
		seen[v.GetName()] = true
	}
	if wd := c.GetWorkingDirectory(); wd != "" {
		if err := actioncache.ValidateOutputPath(wd); err != nil {
			return rpcstatus.Wrap(err, "working_directory")
		}
	}
	lists := [][]string{c.GetOutputPaths(), c.GetOutputFiles(), c.GetOutputDirectories()}
	names := []string{"output_paths", "output_files", "output_directories"}
	for i, list := range lists {
		for _, p := range list {
			if p == "" && names[i] != "output_files" {
				continue // the working directory itself as an output directory
			}
			if err := actioncache.ValidateOutputPath(p); err != nil {
				return rpcstatus.Wrap(err, names[i])
			}
		}
	}
	return nil
}

// parsePlatform checks that properties are sorted by name, then value, as
// REAPI requires (unsorted input is rejected, not re-sorted), and converts
// them.
func parsePlatform(p *repb.Platform) ([]scheduler.Property, error) {
	props := p.GetProperties()
	out := make([]scheduler.Property, len(props))
	for i, pr := range props {
		if pr.GetName() == "" {
			return nil, status.Error(codes.InvalidArgument, "platform property with an empty name")
		}
		out[i] = scheduler.Property{Name: pr.GetName(), Value: pr.GetValue()}
	}
	sorted := sort.SliceIsSorted(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Value < out[j].Value
	})
	if !sorted {
		return nil, status.Error(codes.InvalidArgument, "platform properties are not sorted by name and value")
	}
	return out, nil
}

// maxInlineInputTree bounds the serialized directories of an input tree
// that travel with its action to the worker (scheduler.Action's
// InputDirectories): they are held while the action is queued, like its
// Command. A larger tree is fetched by the worker with GetTree.
const maxInlineInputTree = 64 << 10

// checkInputs walks the input root, validating every directory, and
// returns FAILED_PRECONDITION listing every blob of it (directories and
// files) that the CAS lacks. Walking refreshes all of them, so they are not
// evicted before the worker fetches them. It returns the serialized
// non-empty directories of the tree, as read, when they add up to at most
// maxInlineInputTree bytes, else nil.
func (s *Service) checkInputs(ctx context.Context, l *loaded) ([][]byte, error) {
	var missingDirs []digest.Digest
	var inline [][]byte
	inlineBytes := 0
	files, _, err := inputtree.Walk(l.fn, l.inputRoot, func(d digest.Digest) (*repb.Directory, error) {
		dir := &repb.Directory{}
		if d.IsEmpty() {
			return dir, nil
		}
		data, err := casserver.ReadBlob(ctx, s.blobs, d)
		if err != nil {
			if rpcstatus.IsNotFound(err) {
				missingDirs = append(missingDirs, d)
				return &repb.Directory{}, nil // report all missing at once
			}
			return nil, err
		}
		if err := proto.Unmarshal(data, dir); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "blob %s is not a valid Directory: %v", d, err)
		}
		if inlineBytes += len(data); inlineBytes <= maxInlineInputTree {
			inline = append(inline, data)
		}
		return dir, nil
	})
	if err != nil {
		return nil, rpcstatus.Wrap(err, "input root")
	}
	missing, err := s.blobs.FindMissing(ctx, files)
	if err != nil {
		return nil, rpcstatus.Wrap(err, "input root")
	}
	missing = append(missingDirs, missing...)
	if len(missing) > 0 {
		return nil, missingError("input root "+l.inputRoot.String(), missing)
	}
	if inlineBytes > maxInlineInputTree {
		inline = nil
	}
	return inline, nil
}
