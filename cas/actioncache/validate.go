package actioncache

import (
	"path"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/internal/rpcstatus"
)

// Validate checks every digest and path in res: digests well formed for
// fn, output paths relative, clean, not escaping the working directory and
// not repeated, symlink targets present and relative. Errors are
// InvalidArgument and name the field.
func Validate(fn digest.Function, res *repb.ActionResult) error {
	if res == nil {
		return status.Error(codes.InvalidArgument, "action_result is missing")
	}
	paths := map[string]bool{}
	checkPath := func(field, p string) error {
		if err := ValidateOutputPath(p); err != nil {
			return rpcstatus.Wrap(err, field)
		}
		if paths[p] {
			return status.Errorf(codes.InvalidArgument, "%s: output path %q appears twice", field, p)
		}
		paths[p] = true
		return nil
	}
	checkDigest := func(field string, pb *repb.Digest, required bool) error {
		if pb == nil && !required {
			return nil
		}
		_, err := digest.FromProto(fn, pb)
		return rpcstatus.Wrap(err, field)
	}
	for i, f := range res.GetOutputFiles() {
		field := "output_files[" + itoa(i) + "]"
		if err := checkPath(field, f.GetPath()); err != nil {
			return err
		}
		if err := checkDigest(field+".digest", f.GetDigest(), true); err != nil {
			return err
		}
	}
	for i, d := range res.GetOutputDirectories() {
		field := "output_directories[" + itoa(i) + "]"
		if d.GetPath() != "" { // "" is the working directory itself
			if err := checkPath(field, d.GetPath()); err != nil {
				return err
			}
		}
		if err := checkDigest(field+".tree_digest", d.GetTreeDigest(), true); err != nil {
			return err
		}
		if err := checkDigest(field+".root_directory_digest", d.GetRootDirectoryDigest(), false); err != nil {
			return err
		}
	}
	symlinkLists := []struct {
		field string
		links []*repb.OutputSymlink
	}{
		{"output_symlinks", res.GetOutputSymlinks()},
		{"output_file_symlinks", res.GetOutputFileSymlinks()},
		{"output_directory_symlinks", res.GetOutputDirectorySymlinks()},
	}
	// output_symlinks (2.1) may repeat the deprecated lists' entries, so
	// paths are checked for duplicates within each list only.
	for _, l := range symlinkLists {
		paths = map[string]bool{}
		for i, s := range l.links {
			field := l.field + "[" + itoa(i) + "]"
			if err := checkPath(field, s.GetPath()); err != nil {
				return err
			}
			if s.GetTarget() == "" {
				return status.Errorf(codes.InvalidArgument, "%s: symlink %q has no target", field, s.GetPath())
			}
			if path.IsAbs(s.GetTarget()) {
				return status.Errorf(codes.InvalidArgument, "%s: symlink %q has absolute target %q, which this server disallows", field, s.GetPath(), s.GetTarget())
			}
		}
	}
	if err := checkDigest("stdout_digest", res.GetStdoutDigest(), false); err != nil {
		return err
	}
	return checkDigest("stderr_digest", res.GetStderrDigest(), false)
}

// ValidateOutputPath checks that p is a relative path inside the working
// directory, in canonical form: no leading or trailing slash, no empty,
// "." or ".." segments.
func ValidateOutputPath(p string) error {
	if p == "" {
		return status.Error(codes.InvalidArgument, "output path is empty")
	}
	if strings.HasPrefix(p, "/") {
		return status.Errorf(codes.InvalidArgument, "output path %q is absolute", p)
	}
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case "":
			return status.Errorf(codes.InvalidArgument, "output path %q has an empty segment", p)
		case ".", "..":
			return status.Errorf(codes.InvalidArgument, "output path %q has a %q segment", p, seg)
		}
	}
	if strings.ContainsRune(p, 0) {
		return status.Errorf(codes.InvalidArgument, "output path %q contains a NUL byte", p)
	}
	return nil
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}
