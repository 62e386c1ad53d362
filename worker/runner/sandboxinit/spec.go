// Package sandboxinit is the init of kiln's namespace sandbox: the process
// that worker/runner's Sandbox starts for each action, which enters the
// action's namespaces, builds its view of the filesystem, drops privileges,
// runs the command as PID 1 and reports how it ended. The init is C (see
// cinit.go); this file is the Go side of its protocol: the Spec the worker
// sends on descriptor 3 and the Report it reads on descriptor 4, both in a
// small binary encoding, plus LookPath, whose rules the init follows.
package sandboxinit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Codes of Report.Code and Error.Code: gRPC's numbers.
const (
	CodeOK              = 0
	CodeInvalidArgument = 3
	CodeInternal        = 13
)

// Error is a failure with the gRPC code it is reported under.
type Error struct {
	Code    uint32
	Message string
}

func (e *Error) Error() string { return e.Message }

func errorf(code uint32, format string, args ...any) error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// DefaultPath is the search path when the Command's environment has no
// PATH: the one execvp(3) uses. It is never the worker's own PATH.
const DefaultPath = "/bin:/usr/bin"

// Limits bound what one action may use; 0 means no limit. They are
// rlimits set on the action's processes: inherited by every process of
// the action, enforced per process except Processes.
type Limits struct {
	// Processes bounds the processes and threads the action's user has
	// at once, counted in the action's own user namespace, so that
	// concurrent actions do not share the count (RLIMIT_NPROC). Only
	// enforced when the command does not run as host root.
	Processes int64
	// OpenFiles bounds each process's file descriptors (RLIMIT_NOFILE).
	// At least 64.
	OpenFiles int64
	// FileSizeBytes bounds the size of any file a process writes,
	// stdout and stderr included (RLIMIT_FSIZE; the writer gets SIGXFSZ).
	FileSizeBytes int64
	// MemoryBytes bounds each process's data: heap and private writable
	// mappings (RLIMIT_DATA). At least 64 MiB. It is per process, not
	// for the action as a whole.
	MemoryBytes int64
}

// Rlimit is one limit and its resource.
type Rlimit struct {
	Name     string
	Resource int
	Value    int64
}

// Rlimits pairs each limit with its rlimit.
func (l Limits) Rlimits() []Rlimit {
	return []Rlimit{
		{"processes", unix.RLIMIT_NPROC, l.Processes},
		{"open files", unix.RLIMIT_NOFILE, l.OpenFiles},
		{"file size", unix.RLIMIT_FSIZE, l.FileSizeBytes},
		{"memory", unix.RLIMIT_DATA, l.MemoryBytes},
	}
}

// Spec is what the Sandbox runner tells the init on its fd 3 (see
// MarshalBinary).
type Spec struct {
	// Probe: set up, report, run nothing.
	Probe    bool
	Hermetic bool
	Network  bool
	Args     []string
	Env      []string
	// Dir is the working directory as the command sees it.
	Dir string
	// BuildDir is the host path of the input root.
	BuildDir string
	// Covers are host directories that host mode covers with an empty
	// read-only tmpfs, none below another.
	Covers []string
	// SetIDs: run the command as UID/GID (ids inside the namespace).
	// Otherwise it stays ns root, stripped of capabilities.
	SetIDs   bool
	UID, GID int
	Limits   Limits
}

// Report is what the init answers on its fd 4 (see UnmarshalReport).
type Report struct {
	// Code and Message, when Code is not OK, say why nothing ran.
	Code    uint32
	Message string
	// The command's exit, as in Result.
	ExitCode    int
	Signal      string
	UserTime    time.Duration
	SystemTime  time.Duration
	MaxRSSBytes int64
}

// Arg0 is the argv[0] under which Sandbox starts its init, and Env the
// variable that holds the namespace flags it unshares, in hex.
const (
	Arg0 = "kiln-sandbox-init"
	Env  = "KILN_NSENTER"
)

// MaybeRun is for main's first line. In a binary with the C init, a
// process started as an init never gets this far: the C constructor ran
// the init and exited. So here one is a binary built without cgo, which
// cannot be an init: say so and exit, rather than run main as an init.
func MaybeRun() {
	if len(os.Args) > 0 && os.Args[0] == Arg0 {
		fmt.Fprintln(os.Stderr, "kiln sandbox init: this binary was built without cgo, so without the C init; build it with CGO_ENABLED=1")
		os.Exit(2)
	}
}

// The encoding's magic numbers and flag bits (init.h has them too).
const (
	specMagic   = 0x3149534b // "KSI1" little-endian
	reportMagic = 0x3152534b // "KSR1"
	specMax     = 64 << 20

	flagProbe    = 1
	flagHermetic = 2
	flagNetwork  = 4
	flagSetIDs   = 8
)

// MarshalBinary encodes s as the init reads it: the magic, the flags, the
// ids and the four limits as little-endian integers, then Dir, BuildDir,
// Args, Env and Covers, each string as a 32-bit length and its bytes,
// each list as a 32-bit count and its strings. Strings must not contain
// NUL bytes (the init refuses the spec) and Args must not be empty.
func (s *Spec) MarshalBinary() ([]byte, error) {
	n := 64 + len(s.Dir) + len(s.BuildDir)
	for _, l := range [][]string{s.Args, s.Env, s.Covers} {
		for _, v := range l {
			n += 4 + len(v)
		}
	}
	if n > specMax {
		return nil, fmt.Errorf("sandbox spec: %d bytes, more than %d", n, specMax)
	}
	var flags uint32
	for _, f := range []struct {
		on  bool
		bit uint32
	}{{s.Probe, flagProbe}, {s.Hermetic, flagHermetic}, {s.Network, flagNetwork}, {s.SetIDs, flagSetIDs}} {
		if f.on {
			flags |= f.bit
		}
	}
	if s.UID < 0 || s.GID < 0 || uint64(s.UID) > 1<<32-1 || uint64(s.GID) > 1<<32-1 {
		return nil, fmt.Errorf("sandbox spec: uid %d, gid %d out of range", s.UID, s.GID)
	}
	b := make([]byte, 0, n)
	b = binary.LittleEndian.AppendUint32(b, specMagic)
	b = binary.LittleEndian.AppendUint32(b, flags)
	b = binary.LittleEndian.AppendUint32(b, uint32(s.UID))
	b = binary.LittleEndian.AppendUint32(b, uint32(s.GID))
	for _, r := range s.Limits.Rlimits() {
		b = binary.LittleEndian.AppendUint64(b, uint64(r.Value))
	}
	str := func(v string) {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	str(s.Dir)
	str(s.BuildDir)
	for _, l := range [][]string{s.Args, s.Env, s.Covers} {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(l)))
		for _, v := range l {
			str(v)
		}
	}
	return b, nil
}

// UnmarshalReport decodes a report as the init writes it: the magic, the
// code, the message (32-bit length and bytes, no NUL), the exit code and signal
// number as 32-bit integers, and user time, system time (nanoseconds) and
// peak RSS (bytes) as 64-bit ones. Anything else is an error.
func UnmarshalReport(data []byte) (Report, error) {
	var r Report
	bad := func() (Report, error) { return Report{}, fmt.Errorf("sandbox report: malformed (%d bytes)", len(data)) }
	u32 := func() (uint32, bool) {
		if len(data) < 4 {
			return 0, false
		}
		v := binary.LittleEndian.Uint32(data)
		data = data[4:]
		return v, true
	}
	magic, ok1 := u32()
	code, ok2 := u32()
	mlen, ok3 := u32()
	if !ok1 || !ok2 || !ok3 || magic != reportMagic || uint64(mlen) > uint64(len(data)) || bytes.IndexByte(data[:mlen], 0) >= 0 {
		return bad()
	}
	r.Code, r.Message = code, string(data[:mlen])
	data = data[mlen:]
	exit, ok1 := u32()
	sig, ok2 := u32()
	if !ok1 || !ok2 || len(data) != 24 {
		return bad()
	}
	r.ExitCode = int(int32(exit))
	if sig != 0 {
		r.Signal = unix.SignalName(unix.Signal(sig))
		if r.Signal == "" {
			r.Signal = fmt.Sprintf("signal %d", sig)
		}
	}
	r.UserTime = time.Duration(binary.LittleEndian.Uint64(data))
	r.SystemTime = time.Duration(binary.LittleEndian.Uint64(data[8:]))
	r.MaxRSSBytes = int64(binary.LittleEndian.Uint64(data[16:]))
	return r, nil
}

// LookPath resolves the program of a command. A name with a '/' is a path,
// relative to dir unless absolute; a bare name is searched in the PATH of
// env (empty and relative entries are relative to dir), never in the
// worker's PATH. A program that is not there is InvalidArgument.
func LookPath(prog, dir string, env []string) (string, error) {
	if strings.Contains(prog, "/") {
		p := prog
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if err := checkExecutable(p); err != nil {
			return "", errorf(CodeInvalidArgument, "program %q %s", prog, err.Error())
		}
		return p, nil
	}
	search, ok := DefaultPath, false
	for _, kv := range env {
		if v, found := strings.CutPrefix(kv, "PATH="); found {
			search, ok = v, true // the last one wins, as in exec's deduplication
		}
	}
	var lastErr error
	for _, d := range filepath.SplitList(search) {
		if d == "" {
			d = "."
		}
		if !filepath.IsAbs(d) {
			d = filepath.Join(dir, d)
		}
		p := filepath.Join(d, prog)
		err := checkExecutable(p)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, errNotFound) {
			lastErr = err
		}
	}
	where := "the command's PATH " + search
	if !ok {
		where = "the default PATH " + DefaultPath + " (the command sets no PATH)"
	}
	if lastErr != nil {
		return "", errorf(CodeInvalidArgument, "program %q found in %s, but %s", prog, where, lastErr.Error())
	}
	return "", errorf(CodeInvalidArgument, "program %q not found in %s", prog, where)
}

var errNotFound = errors.New("not found")

// checkExecutable reports whether p is a file the worker may execute.
func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return errNotFound
	}
	if fi.IsDir() {
		return errors.New("is a directory")
	}
	if err := unix.Access(p, unix.X_OK); err != nil {
		return errors.New("is not executable")
	}
	return nil
}
