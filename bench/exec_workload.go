package bench

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/kiln-build/kiln/cas/digest"
)

// The file names of an exec action: the command copies its input file to
// its output file, so a correct result has an output whose digest is the
// input's, which the client knows without reading anything back.
const (
	execInputName  = "in.txt"
	execOutputName = "out.txt"
)

// execPath is the PATH of every command. REAPI workers start commands with
// exactly the environment the Command gives, so without it a command finds
// no programs by name.
const execPath = "/usr/bin:/bin"

// execAction is one action of an exec run. Every action has its own input
// file (and so its own input root and Action digest); all share one Command.
type execAction struct {
	digest digest.Digest // of the Action message
	input  digest.Digest // of in.txt, and so also of the expected out.txt
}

// execWorkload is all the data of an exec run, built and hashed before
// anything is timed.
type execWorkload struct {
	actions []execAction
	command *repb.Command
	// blobs are every input file, input root Directory, Action and the
	// Command, each once: what must be in the CAS before Execute.
	blobs []blob
}

// execArguments returns the command line of every action: a shell that
// copies in.txt to out.txt, after sleeping for sleep if it is not zero.
// Fractional seconds need a sleep(1) that accepts them (GNU coreutils,
// busybox and the BSDs all do).
func execArguments(sleep time.Duration) []string {
	script := "cat " + execInputName + " > " + execOutputName
	if sleep > 0 {
		script = "sleep " + strconv.FormatFloat(sleep.Seconds(), 'f', -1, 64) + " && " + script
	}
	return []string{"/bin/sh", "-c", script}
}

// newExecWorkload builds n actions. The content of action i's input file
// names the run and i, so every action of every run with a distinct runID
// is new to the server and cannot be answered from its action cache.
//
// The Command lists its output both in output_paths (REAPI 2.1 and later)
// and in the deprecated output_files, which servers older than 2.1 read and
// newer ones ignore when output_paths is set. Likewise the platform goes in
// both the Action (REAPI 2.2) and the deprecated Command field, as REAPI
// asks of clients during the migration.
func newExecWorkload(n int, runID string, sleep, timeout time.Duration, platform *repb.Platform) (execWorkload, error) {
	opts := proto.MarshalOptions{Deterministic: true}
	w := execWorkload{
		actions: make([]execAction, n),
		command: &repb.Command{
			Arguments:            execArguments(sleep),
			EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: execPath}},
			OutputFiles:          []string{execOutputName},
			OutputPaths:          []string{execOutputName},
			Platform:             platform,
		},
		blobs: make([]blob, 0, 3*n+1),
	}
	add := func(m proto.Message) (digest.Digest, error) {
		data, err := opts.Marshal(m)
		if err != nil {
			return digest.Digest{}, err
		}
		d := digest.FromBytes(digest.SHA256, data)
		w.blobs = append(w.blobs, blob{data: data, d: d})
		return d, nil
	}
	cmdDigest, err := add(w.command)
	if err != nil {
		return execWorkload{}, err
	}
	for i := range w.actions {
		data := []byte(fmt.Sprintf("kiln bench exec: run %s, action %d\n", runID, i))
		input := digest.FromBytes(digest.SHA256, data)
		w.blobs = append(w.blobs, blob{data: data, d: input})
		root, err := add(&repb.Directory{
			Files: []*repb.FileNode{{Name: execInputName, Digest: input.Proto()}},
		})
		if err != nil {
			return execWorkload{}, err
		}
		action, err := add(&repb.Action{
			CommandDigest:   cmdDigest.Proto(),
			InputRootDigest: root.Proto(),
			Timeout:         durationpb.New(timeout),
			DoNotCache:      false, // results may be cached; this run's actions are new anyway
			Platform:        platform,
		})
		if err != nil {
			return execWorkload{}, err
		}
		w.actions[i] = execAction{digest: action, input: input}
	}
	return w, nil
}

// parsePlatform turns "name=value" properties into a Platform sorted by
// name, then value, as REAPI requires (servers may reject unsorted ones).
// A name may repeat with different values; an identical property given
// twice is an error, as it is probably a typo. No properties give nil.
func parsePlatform(props []string) (*repb.Platform, error) {
	if len(props) == 0 {
		return nil, nil
	}
	p := &repb.Platform{}
	for _, s := range props {
		name, value, ok := strings.Cut(s, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("platform %q: want name=value", s)
		}
		p.Properties = append(p.Properties, &repb.Platform_Property{Name: name, Value: value})
	}
	slices.SortFunc(p.Properties, func(a, b *repb.Platform_Property) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.Value, b.Value))
	})
	for i := 1; i < len(p.Properties); i++ {
		if a, b := p.Properties[i-1], p.Properties[i]; a.Name == b.Name && a.Value == b.Value {
			return nil, fmt.Errorf("platform %s=%s: given twice", a.Name, a.Value)
		}
	}
	return p, nil
}

// platformStrings returns p's properties as "name=value", in order.
func platformStrings(p *repb.Platform) []string {
	out := []string{}
	for _, pp := range p.GetProperties() {
		out = append(out, pp.GetName()+"="+pp.GetValue())
	}
	return out
}
