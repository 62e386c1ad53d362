package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/internal/rpcstatus"
	"github.com/kiln-build/kiln/worker/runner/sandboxinit"
)

// DefaultSandboxID is the uid and gid that actions run as when the worker
// runs as root and the configuration names none: nobody/nogroup on Debian.
const DefaultSandboxID = 65534

// SandboxConfig configures a Sandbox.
type SandboxConfig struct {
	// UID and GID are the host ids the command runs as. A worker running
	// as root may choose any (DefaultSandboxID is the usual choice; 0
	// makes the command root on the host's files, which lets it rewrite
	// the worker's file cache through the hardlinked inputs: do not). A
	// worker running as another user can only run commands as itself,
	// so they must be its own ids. Inside the sandbox the ids keep their
	// numbers, except that a non-root worker's own ids appear as 0 (with
	// no capabilities).
	UID, GID int
	// AllowNetwork lets actions ask for the host's network with
	// network=on. Without it they get loopback only.
	AllowNetwork bool
	// Limits bound each action.
	Limits Limits
	// HidePaths are host directories that host mode covers with an empty
	// read-only directory: the worker's work directory (other actions'
	// build directories, the file cache), the server's storage. Paths
	// that do not exist when an action runs are skipped. Hermetic mode
	// shows nothing of the host anyway.
	HidePaths []string
	// Init is the binary started as each action's init: one that links
	// package sandboxinit (built with cgo) and whose main calls
	// sandboxinit.MaybeRun (or MaybeRunInit) first. "" means the running
	// binary. A small binary starts faster.
	Init string
}

// Sandbox runs each command in new user, mount, PID, network, IPC, UTS
// and cgroup namespaces, as an unprivileged user, in the mode that the
// action's platform properties ask for (see PropertySandbox and
// PropertyNetwork).
//
// How: Run starts the init binary (by default the running one,
// /proc/self/exe) with vfork and exec; its C part (see package
// sandboxinit) takes over before its Go runtime would start, enters the
// namespaces, and as their PID 1 builds the filesystem view, starts the
// command as the sandbox user and waits for it, reaping orphans as PID 1
// must. When the command exits, the init reports its status and exits,
// and the kernel kills whatever the command left running in the PID
// namespace; on timeout or cancellation Run kills the init, with the same
// effect. So no process of an action outlives Run, including ones that
// ignore SIGTERM or leave their process group.
//
// Inside the user namespace, host uid 0 is mapped (as 0) for the init,
// which needs it to reach and mount host paths, and the sandbox uid is
// mapped as itself for the command. The command has no capabilities, no
// way to gain any (no_new_privs, and every mount is nosuid), and owns only
// the directories of its build directory and its stdout and stderr files:
// the input files, hardlinked from the worker's cache, stay root's and
// read-only to it.
//
// Result.Started is taken before the init starts: an action's run time
// includes the sandbox's set-up and tear-down, 8-10 ms more than a plain
// process with the kiln command as the init (BenchmarkRun).
type Sandbox struct {
	cfg SandboxConfig
	// root: the worker runs as root and the command as cfg.UID/GID with
	// ids mapped as themselves; otherwise the command runs as ns root,
	// which is the worker's own ids.
	root           bool
	uidMap, gidMap []syscall.SysProcIDMap
	// exe is the binary started as the init: cfg.Init, else this one.
	exe string
}

var _ Runner = (*Sandbox)(nil)

// NewSandbox checks cfg and that this binary can sandbox on this kernel:
// it sets up both modes once, in a probe that runs no command. The error
// says what is missing (user namespaces disabled, an init binary built
// without cgo, a kernel older than 5.12, ...).
func NewSandbox(cfg SandboxConfig) (*Sandbox, error) {
	l := cfg.Limits
	switch {
	case cfg.UID < 0 || cfg.GID < 0:
		return nil, fmt.Errorf("sandbox: uid %d, gid %d: want ids of 0 or more", cfg.UID, cfg.GID)
	case l.Processes < 0 || l.OpenFiles < 0 || l.FileSizeBytes < 0 || l.MemoryBytes < 0:
		return nil, errors.New("sandbox: negative limit")
	case l.OpenFiles != 0 && l.OpenFiles < 64:
		return nil, fmt.Errorf("sandbox: open files limit %d: want at least 64", l.OpenFiles)
	case l.MemoryBytes != 0 && l.MemoryBytes < 64<<20:
		return nil, fmt.Errorf("sandbox: memory limit %d bytes: want at least 64 MiB", l.MemoryBytes)
	}
	if err := checkHardLimits(l); err != nil {
		return nil, err
	}
	s := &Sandbox{cfg: cfg, root: os.Geteuid() == 0, exe: "/proc/self/exe"}
	if cfg.Init != "" {
		s.exe = cfg.Init
	}
	if s.root {
		s.uidMap = []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}}
		s.gidMap = []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}}
		if cfg.UID != 0 {
			s.uidMap = append(s.uidMap, syscall.SysProcIDMap{ContainerID: cfg.UID, HostID: cfg.UID, Size: 1})
		}
		if cfg.GID != 0 {
			s.gidMap = append(s.gidMap, syscall.SysProcIDMap{ContainerID: cfg.GID, HostID: cfg.GID, Size: 1})
		}
	} else {
		if cfg.UID != os.Geteuid() || cfg.GID != os.Getegid() {
			return nil, fmt.Errorf("sandbox: the worker runs as uid %d gid %d, not root, so actions can only run as those ids, not uid %d gid %d",
				os.Geteuid(), os.Getegid(), cfg.UID, cfg.GID)
		}
		s.uidMap = []syscall.SysProcIDMap{{ContainerID: 0, HostID: cfg.UID, Size: 1}}
		s.gidMap = []syscall.SysProcIDMap{{ContainerID: 0, HostID: cfg.GID, Size: 1}}
	}
	if err := s.probe(); err != nil {
		return nil, fmt.Errorf("sandbox unavailable: %w", err)
	}
	return s, nil
}

// socketPair returns the worker's end (non-blocking, so that reads can
// time out) and the init's end of a Unix socket pair.
func socketPair() (ours, theirs *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), "init-sync"), os.NewFile(uintptr(fds[1]), "init-sync-theirs"), nil
}

// unshareTimeout bounds the wait for an init to unshare.
const unshareTimeout = 10 * time.Second

// mapIDs waits for the init at pid to unshare its namespaces, writes its
// uid and gid maps as clone would, and lets it go on.
func (s *Sandbox) mapIDs(sync *os.File, pid int) error {
	sync.SetDeadline(time.Now().Add(unshareTimeout))
	b := make([]byte, 1)
	if n, err := sync.Read(b); n != 1 || b[0] != 'u' {
		return fmt.Errorf("the init did not enter its namespaces (%v): is the init binary built with cgo, linking package sandboxinit?", err)
	}
	write := func(name, data string) error {
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/%s", pid, name), []byte(data), 0); err != nil {
			return fmt.Errorf("write the init's %s: %w", name, err)
		}
		return nil
	}
	setgroups := "deny"
	if s.root {
		setgroups = "allow"
	}
	if err := write("uid_map", formatIDMap(s.uidMap)); err != nil {
		return err
	}
	if err := write("setgroups", setgroups); err != nil {
		return err
	}
	if err := write("gid_map", formatIDMap(s.gidMap)); err != nil {
		return err
	}
	if _, err := sync.Write([]byte{'m'}); err != nil {
		return fmt.Errorf("tell the init its maps are written: %w", err)
	}
	return nil
}

// formatIDMap renders m as /proc/PID/uid_map takes it.
func formatIDMap(m []syscall.SysProcIDMap) string {
	var b strings.Builder
	for _, e := range m {
		fmt.Fprintf(&b, "%d %d %d\n", e.ContainerID, e.HostID, e.Size)
	}
	return b.String()
}

// checkHardLimits checks that no limit is above the worker's own hard
// limit: the init, privileged only in its user namespace, cannot raise one.
func checkHardLimits(l Limits) error {
	for _, r := range l.Rlimits() {
		var cur unix.Rlimit
		if r.Value == 0 || unix.Getrlimit(r.Resource, &cur) != nil || cur.Max == unix.RLIM_INFINITY {
			continue
		}
		if uint64(r.Value) > cur.Max {
			return fmt.Errorf("sandbox: %s limit %d is above the worker's own hard limit, %d", r.Name, r.Value, cur.Max)
		}
	}
	return nil
}

// Properties returns the platform properties that a worker with this
// sandbox can honour, to announce to the scheduler: both modes, and the
// network settings it permits.
func (s *Sandbox) Properties() []*repb.Platform_Property {
	props := []*repb.Platform_Property{
		{Name: PropertyNetwork, Value: NetworkOff},
	}
	if s.cfg.AllowNetwork {
		props = append(props, &repb.Platform_Property{Name: PropertyNetwork, Value: NetworkOn})
	}
	return append(props,
		&repb.Platform_Property{Name: PropertySandbox, Value: SandboxHermetic},
		&repb.Platform_Property{Name: PropertySandbox, Value: SandboxHost})
}

// probe sets up both modes on an empty directory without running anything.
func (s *Sandbox) probe() error {
	dir, err := os.MkdirTemp("", "kiln-sandbox-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return err
	}
	for _, mode := range []string{SandboxHost, SandboxHermetic} {
		req := Request{
			Args: []string{"probe"}, Dir: root, BuildDir: root,
			StdoutPath: filepath.Join(dir, "stdout"), StderrPath: filepath.Join(dir, "stderr"),
			Platform: []*repb.Platform_Property{{Name: PropertySandbox, Value: mode}},
		}
		if _, err := s.run(context.Background(), req, true); err != nil {
			out, _ := os.ReadFile(req.StderrPath)
			if len(out) > 0 {
				return fmt.Errorf("%s mode: %v (init's stderr: %s)", mode, status.Convert(err).Message(), strings.TrimSpace(string(out)))
			}
			return fmt.Errorf("%s mode: %v", mode, status.Convert(err).Message())
		}
	}
	return nil
}

// Run runs req in the sandbox mode its platform asks for. See Runner.
// Besides Runner's errors: an unknown sandbox or network value is
// InvalidArgument, network=on where not allowed FailedPrecondition, and
// in hermetic mode a non-directory at dev, proc or tmp of the input root
// InvalidArgument.
func (s *Sandbox) Run(ctx context.Context, req Request) (Result, error) {
	return s.run(ctx, req, false)
}

// mountPoints are the directories that hermetic mode mounts over in the
// input root.
var mountPoints = []string{"dev", "proc", "tmp"}

func (s *Sandbox) run(ctx context.Context, req Request, probe bool) (Result, error) {
	if len(req.Args) == 0 || req.Args[0] == "" {
		return Result{}, status.Error(codes.InvalidArgument, "no program to run: arguments are empty")
	}
	for _, a := range [][]string{req.Args, req.Env} {
		for _, s := range a {
			if strings.IndexByte(s, 0) >= 0 {
				return Result{}, status.Errorf(codes.InvalidArgument, "argument or environment variable %q contains a NUL byte", s)
			}
		}
	}
	opts, err := parsePlatform(req.Platform, s.cfg.AllowNetwork)
	if err != nil {
		return Result{}, err
	}
	if !filepath.IsAbs(req.Dir) || !filepath.IsAbs(req.BuildDir) {
		return Result{}, status.Errorf(codes.Internal, "working directory %q or build directory %q is not absolute", req.Dir, req.BuildDir)
	}
	rel, err := filepath.Rel(req.BuildDir, req.Dir)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return Result{}, status.Errorf(codes.Internal, "working directory %q is not in build directory %q", req.Dir, req.BuildDir)
	}
	spec := initSpec{
		Probe:    probe,
		Hermetic: opts.mode == modeHermetic,
		Network:  opts.network,
		Args:     req.Args,
		Env:      req.Env,
		Dir:      req.Dir,
		BuildDir: req.BuildDir,
		SetIDs:   s.root,
		UID:      s.cfg.UID,
		GID:      s.cfg.GID,
		Limits:   s.cfg.Limits,
	}
	if spec.Env == nil {
		spec.Env = []string{}
	}
	if spec.Hermetic {
		spec.Dir = filepath.Join("/", rel)
		created, err := makeMountPoints(req.BuildDir)
		defer func() {
			for _, d := range created {
				_ = os.Remove(d) // empty: the mounts on it hid it from the command
			}
		}()
		if err != nil {
			return Result{}, err
		}
	} else {
		spec.Covers = s.covers(req.BuildDir)
	}
	if s.root && s.cfg.UID != 0 {
		if err := chownDirs(req.BuildDir, s.cfg.UID, s.cfg.GID); err != nil {
			return Result{}, err
		}
	}
	return s.start(ctx, req, spec, opts)
}

// makeMountPoints creates the directories of mountPoints in root that do
// not exist, and returns the ones it created.
func makeMountPoints(root string) ([]string, error) {
	var created []string
	for _, name := range mountPoints {
		p := filepath.Join(root, name)
		err := os.Mkdir(p, 0o755)
		if err == nil {
			created = append(created, p)
			continue
		}
		if !errors.Is(err, fs.ErrExist) {
			return created, status.Errorf(codes.Internal, "hermetic sandbox: %v", err)
		}
		if fi, err := os.Lstat(p); err != nil || !fi.IsDir() {
			return created, status.Errorf(codes.InvalidArgument, "hermetic sandbox: the input root has a non-directory at /%s, where the sandbox mounts its own", name)
		}
	}
	return created, nil
}

// chownDirs gives the directories of the build directory to the sandbox
// user, so that the command can create its outputs anywhere in it. Files
// stay as they are: the inputs are the file cache's, read-only to the
// command.
func chownDirs(buildDir string, uid, gid int) error {
	err := filepath.WalkDir(buildDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.Lchown(p, uid, gid)
		}
		return nil
	})
	if err != nil {
		return status.Errorf(codes.Internal, "sandbox: give the build directory to uid %d: %v", uid, err)
	}
	return nil
}

// covers returns the directories that host mode covers with an empty
// read-only directory for an action in buildDir: the configured hidden
// paths that exist, and the shallowest ancestor of buildDir that the
// sandbox user cannot search (it could not reach its build directory
// through it, and hides nothing it could read). Paths below /tmp are left
// out, as the private /tmp hides them, and so are /, buildDir itself,
// paths inside it, and paths below another cover.
func (s *Sandbox) covers(buildDir string) []string {
	var cand []string
	for _, h := range s.cfg.HidePaths {
		if p, err := filepath.EvalSymlinks(h); err == nil {
			if p, err = filepath.Abs(p); err == nil {
				cand = append(cand, p)
			}
		}
	}
	for a := filepath.Dir(buildDir); a != "/"; a = filepath.Dir(a) {
		if !s.searchable(a) {
			cand = append(cand, a) // the last one found is the shallowest
		}
	}
	sort.Slice(cand, func(i, j int) bool { return len(cand[i]) < len(cand[j]) })
	var out []string
	for _, c := range cand {
		if c == "/" || within(c, "/tmp") || within(c, buildDir) {
			continue // hiding / would hide the host, which host mode shows
		}
		nested := false
		for _, o := range out {
			nested = nested || within(c, o)
		}
		if !nested {
			out = append(out, c)
		}
	}
	return out
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// searchable reports whether the command's user may look up names in dir,
// going by its mode bits (the command has no supplementary groups).
func (s *Sandbox) searchable(dir string) bool {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return true // nothing to cover: the init will fail on it if it matters
	}
	switch {
	case s.cfg.UID == 0:
		return true
	case int(st.Uid) == s.cfg.UID:
		return st.Mode&0o100 != 0
	case int(st.Gid) == s.cfg.GID:
		return st.Mode&0o010 != 0
	}
	return st.Mode&0o001 != 0
}

// start runs the init with spec and waits for it, killing it on timeout
// or cancellation.
func (s *Sandbox) start(ctx context.Context, req Request, spec initSpec, opts sandboxOptions) (Result, error) {
	stdout, err := os.OpenFile(req.StdoutPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return Result{}, status.Errorf(codes.Internal, "stdout: %v", err)
	}
	defer stdout.Close()
	stderr, err := os.OpenFile(req.StderrPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return Result{}, status.Errorf(codes.Internal, "stderr: %v", err)
	}
	defer stderr.Close()
	if s.root && s.cfg.UID != 0 {
		// Scripts reopen them by path (echo oops > /dev/stderr), which
		// checks the files' permissions.
		for _, f := range []*os.File{stdout, stderr} {
			if err := f.Chown(s.cfg.UID, s.cfg.GID); err != nil {
				return Result{}, status.Errorf(codes.Internal, "sandbox: give %s to uid %d: %v", f.Name(), s.cfg.UID, err)
			}
		}
	}
	data, err := spec.MarshalBinary()
	if err != nil {
		return Result{}, status.Errorf(codes.Internal, "sandbox: encode the init's spec: %v", err)
	}
	specR, specW, err := os.Pipe()
	if err != nil {
		return Result{}, status.Errorf(codes.Internal, "sandbox: %v", err)
	}
	defer specR.Close()
	defer specW.Close()
	reportR, reportW, err := os.Pipe()
	if err != nil {
		return Result{}, status.Errorf(codes.Internal, "sandbox: %v", err)
	}
	defer reportR.Close()
	defer reportW.Close()

	flags := uintptr(unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS | unix.CLONE_NEWCGROUP)
	if !opts.network {
		flags |= unix.CLONE_NEWNET
	}
	sync, theirs, err := socketPair()
	if err != nil {
		return Result{}, status.Errorf(codes.Internal, "sandbox: %v", err)
	}
	defer sync.Close()
	defer theirs.Close()
	cmd := &exec.Cmd{
		// The binary that is running, even if its file was replaced.
		Path: s.exe,
		// initArg0 makes the C init take over; it unshares the
		// namespaces of flags and waits for its maps on fd 5. The flag
		// is for a test binary built without the C init: it then runs
		// no test (rather than all of them, recursively) and the run
		// fails for want of a report.
		Args:       []string{initArg0, "-test.run=^$"},
		Env:        []string{fmt.Sprintf("%s=%x", sandboxinit.Env, flags)},
		Stdout:     stdout,
		Stderr:     stderr,
		ExtraFiles: []*os.File{specR, reportW, theirs}, // fds 3, 4 and 5
		SysProcAttr: &syscall.SysProcAttr{
			// Out of the worker's process group: a ^C in the worker's
			// terminal is the worker's business.
			Setpgid: true,
			// If the worker dies, the init dies, and with it the action.
			Pdeathsig: syscall.SIGKILL,
		},
	}
	// Pdeathsig fires when the thread that forked the child exits; pin
	// this goroutine's thread so the runtime cannot retire it meanwhile.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	res := Result{Started: time.Now()}
	if err := cmd.Start(); err != nil {
		return Result{}, status.Errorf(codes.Internal, "sandbox: start the init: %v", err)
	}
	pid := cmd.Process.Pid
	theirs.Close() // the init's copy is enough
	if err := s.mapIDs(sync, pid); err != nil {
		_ = unix.Kill(pid, unix.SIGKILL)
		_ = cmd.Wait()
		return Result{}, status.Errorf(codes.Internal, "sandbox: %v", err)
	}
	specR.Close()
	reportW.Close()
	reportc := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(reportR, 1<<20))
		reportc <- b
	}()
	// The init reads its spec first thing; if it died instead, the write
	// fails and the missing report says so below.
	_, _ = specW.Write(data)
	specW.Close()

	exited := make(chan struct{})
	go func() {
		defer close(exited)
		var info unix.Siginfo
		for {
			// WNOWAIT: the pid stays reserved until cmd.Wait reaps it,
			// so the kills below cannot hit a recycled pid.
			if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != unix.EINTR {
				return
			}
		}
	}()
	// stop ends the action: SIGTERM, on which the init's first process
	// kills PID 1 and exits once the PID namespace is gone.
	stop := func() { _ = unix.Kill(pid, unix.SIGTERM) }
	var timeout <-chan time.Time
	if req.Timeout > 0 {
		t := time.NewTimer(req.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	var ctxErr error
	select {
	case <-exited:
	case <-timeout:
		res.TimedOut = true
		stop() // the PID namespace dies with its init
		<-exited
	case <-ctx.Done():
		ctxErr = rpcstatus.FromContext(ctx)
		stop()
		<-exited
	}
	res.Finished = time.Now()
	waitErr := cmd.Wait()
	raw := <-reportc

	rep, repErr := sandboxinit.UnmarshalReport(raw)
	if repErr != nil {
		if res.TimedOut || ctxErr != nil {
			// Killed before the command ended: it died of the SIGKILL.
			res.ExitCode, res.Signal = 128+int(unix.SIGKILL), unix.SignalName(unix.SIGKILL)
			return res, ctxErr
		}
		return res, status.Errorf(codes.Internal, "sandbox: the init ended (%v) without a report (%v); is the init binary built with cgo?", waitErr, repErr)
	}
	if rep.Code != sandboxinit.CodeOK {
		return Result{}, status.Error(codes.Code(rep.Code), rep.Message)
	}
	res.ExitCode, res.Signal = rep.ExitCode, rep.Signal
	res.UserTime, res.SystemTime, res.MaxRSSBytes = rep.UserTime, rep.SystemTime, rep.MaxRSSBytes
	return res, ctxErr
}
