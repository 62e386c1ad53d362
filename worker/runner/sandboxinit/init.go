// Package sandboxinit is the init of kiln's namespace sandbox: the process
// that worker/runner's Sandbox starts as PID 1 of an action's namespaces,
// which builds the action's view of the filesystem, drops privileges and
// runs the command. It is a package of its own, free of gRPC, so that the
// small kiln command can be the init: starting it costs a few milliseconds
// less per action than starting kiln-core.
package sandboxinit

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
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

// Spec is what the Sandbox runner tells the init, as JSON on its fd 3.
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

// Report is what the init answers, as JSON on its fd 4.
type Report struct {
	// Code and Message, when Code is not OK, say why nothing ran.
	Code    uint32 `json:",omitempty"`
	Message string `json:",omitempty"`
	// The command's exit, as in Result.
	ExitCode    int
	Signal      string `json:",omitempty"`
	UserTime    time.Duration
	SystemTime  time.Duration
	MaxRSSBytes int64
}

// Arg0 is the argv[0] under which Sandbox starts its init.
const Arg0 = "kiln-sandbox-init"

// MaybeRun turns this process into a sandbox's init if Sandbox started
// it as one, and then never returns; otherwise it returns at once. Call it
// first thing in main (and in TestMain of tests that use a Sandbox),
// before anything starts goroutines or reads flags: the Sandbox runner
// re-executes the running binary to set up its namespaces.
func MaybeRun() {
	if len(os.Args) == 0 || os.Args[0] != Arg0 {
		return
	}
	// Securebits and no_new_privs belong to a thread; the command is
	// forked from this one.
	runtime.LockOSThread()
	os.Exit(runInit())
}

// runInit reads the spec on fd 3, runs it and writes the report on fd 4.
// Its stdout and stderr are the action's.
func runInit() int {
	// Set up mounts as anything but PID 1 of a new PID namespace and it
	// would be the host's mounts: an init asked to enter its namespaces
	// itself (package nsenter) whose binary lacks nsenter gets here
	// without any.
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "kiln sandbox init: not PID 1 of a new PID namespace (an init that should enter its namespaces must import sandboxinit/nsenter)")
		return 2
	}
	specFile := os.NewFile(3, "spec")
	reportFile := os.NewFile(4, "report")
	if specFile == nil || reportFile == nil {
		fmt.Fprintln(os.Stderr, "kiln sandbox init: no spec or report descriptor")
		return 2
	}
	syscall.CloseOnExec(3)
	syscall.CloseOnExec(4)
	var spec Spec
	err := json.NewDecoder(specFile).Decode(&spec)
	specFile.Close()
	var rep Report
	if err != nil {
		err = errorf(CodeInternal, "sandbox init: read the spec: %v", err)
	} else {
		err = runSpec(&spec, &rep)
	}
	if err != nil {
		rep = Report{Code: CodeInternal, Message: err.Error()}
		var e *Error
		if errors.As(err, &e) && e.Code != CodeOK {
			rep.Code = e.Code
		}
	}
	if err := json.NewEncoder(reportFile).Encode(rep); err != nil {
		return 2
	}
	return 0
}

// runSpec sets up the sandbox and runs the command; the init is then PID 1
// of a PID namespace, root of its user namespace.
func runSpec(spec *Spec, rep *Report) error {
	if err := setupSandbox(spec); err != nil {
		return errorf(CodeInternal, "sandbox init (%s mode): %v", modeName(spec.Hermetic), err)
	}
	if err := restrict(spec); err != nil {
		return errorf(CodeInternal, "sandbox init: %v", err)
	}
	if spec.Probe {
		return nil
	}
	prog, err := LookPath(spec.Args[0], spec.Dir, spec.Env)
	if err != nil {
		return err
	}
	attr := &os.ProcAttr{
		Dir:   spec.Dir,
		Env:   spec.Env,
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		Sys:   &syscall.SysProcAttr{},
	}
	if spec.SetIDs {
		attr.Sys.Credential = &syscall.Credential{Uid: uint32(spec.UID), Gid: uint32(spec.GID), Groups: []uint32{}}
	}
	proc, err := os.StartProcess(prog, spec.Args, attr)
	if err != nil {
		if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.ENOEXEC) || errors.Is(err, syscall.ENOENT) {
			// ENOENT here is a missing interpreter or ELF loader.
			return errorf(CodeInvalidArgument, "program %q cannot be executed: %v", spec.Args[0], err)
		}
		return errorf(CodeInternal, "start %q: %v", spec.Args[0], err)
	}
	// As PID 1, reap every process that ends up here until the command
	// itself ends. Returning then ends the init, and the kernel kills the
	// rest of the namespace.
	for {
		var ws unix.WaitStatus
		var ru unix.Rusage
		wpid, err := unix.Wait4(-1, &ws, 0, &ru)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return errorf(CodeInternal, "sandbox init: wait: %v", err)
		}
		if wpid != proc.Pid {
			continue
		}
		if ws.Signaled() {
			rep.ExitCode = 128 + int(ws.Signal())
			rep.Signal = unix.SignalName(ws.Signal())
		} else {
			rep.ExitCode = ws.ExitStatus()
		}
		rep.UserTime = time.Duration(ru.Utime.Nano())
		rep.SystemTime = time.Duration(ru.Stime.Nano())
		rep.MaxRSSBytes = ru.Maxrss * 1024
		return nil
	}
}

func modeName(hermetic bool) string {
	if hermetic {
		return "hermetic"
	}
	return "host"
}

// devices are the nodes of the sandbox's /dev, bound from the host's.
var devices = []string{"null", "zero", "full", "random", "urandom"}

// setupSandbox builds the command's view of the system:
//
//	host:     /            the host's, read-only and nosuid, recursively
//	          /tmp         an empty tmpfs
//	          Covers       empty read-only tmpfs each
//	          BuildDir     the build directory, writable, at its own path
//	hermetic: /            the build directory, writable
//	both:     /dev         a read-only tmpfs: null zero full random urandom,
//	                       fd stdin stdout stderr, and a writable shm
//	          /proc        the PID namespace's own
//
// plus the hostname "localhost" and, without network, loopback up.
func setupSandbox(spec *Spec) error {
	if err := unix.Sethostname([]byte("localhost")); err != nil {
		return fmt.Errorf("sethostname: %w", err)
	}
	if !spec.Network {
		if err := loopbackUp(); err != nil {
			return err
		}
	}
	// Nothing done here propagates back to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	// Descriptors of what later mounts hide.
	devFDs := make([]int, len(devices))
	for i, d := range devices {
		fd, err := unix.Open("/dev/"+d, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open /dev/%s: %w", d, err)
		}
		defer unix.Close(fd)
		devFDs[i] = fd
	}
	buildFD, err := unix.Open(spec.BuildDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the build directory: %w", err)
	}
	defer unix.Close(buildFD)

	root := "/"
	if spec.Hermetic {
		root = spec.BuildDir
		if err := bindFD(buildFD, root); err != nil {
			return err
		}
	} else {
		// Everything read-only and nosuid, in one call that reaches every
		// mount below /.
		if err := unix.MountSetattr(-1, "/", unix.AT_RECURSIVE, &unix.MountAttr{
			Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID,
		}); err != nil {
			return fmt.Errorf("make / read-only: %w", err)
		}
		for _, c := range spec.Covers {
			if err := mountTmpfs(c, 0o755); err != nil {
				return err
			}
		}
		if err := mountTmpfs("/tmp", 0o1777); err != nil {
			return err
		}
		if err := os.MkdirAll(spec.BuildDir, 0o755); err != nil {
			return fmt.Errorf("build directory mount point: %w", err)
		}
		if err := bindFD(buildFD, spec.BuildDir); err != nil {
			return err
		}
		for _, c := range spec.Covers {
			if err := setReadOnly(c); err != nil {
				return err
			}
		}
	}
	if spec.Hermetic {
		if err := mountTmpfs(filepath.Join(root, "tmp"), 0o1777); err != nil {
			return err
		}
	}
	if err := setupDev(filepath.Join(root, "dev"), devFDs); err != nil {
		return err
	}
	if err := unix.Mount("proc", filepath.Join(root, "proc"), "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	if spec.Hermetic {
		// pivot_root(".", ".") stacks the old root on the new one; the
		// detach then drops it, and the host with it.
		if err := unix.Chdir(root); err != nil {
			return err
		}
		if err := unix.PivotRoot(".", "."); err != nil {
			return fmt.Errorf("pivot_root: %w", err)
		}
		if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
			return fmt.Errorf("detach the host's root: %w", err)
		}
	}
	if spec.Probe {
		return nil
	}
	if err := unix.Chdir(spec.Dir); err != nil {
		return fmt.Errorf("working directory %s: %w", spec.Dir, err)
	}
	return nil
}

// bindFD binds the directory or file open as fd onto target, writable,
// nosuid and nodev.
func bindFD(fd int, target string) error {
	if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", fd), target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", target, err)
	}
	if err := unix.MountSetattr(-1, target, 0, &unix.MountAttr{
		Attr_set: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV,
		Attr_clr: unix.MOUNT_ATTR_RDONLY,
	}); err != nil {
		return fmt.Errorf("make %s writable: %w", target, err)
	}
	return nil
}

// mountTmpfs mounts an empty tmpfs, owned by root, on dir.
func mountTmpfs(dir string, mode os.FileMode) error {
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("mode=%o", uint32(mode))); err != nil {
		return fmt.Errorf("mount a tmpfs on %s: %w", dir, err)
	}
	return nil
}

func setReadOnly(dir string) error {
	if err := unix.MountSetattr(-1, dir, 0, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
		return fmt.Errorf("make %s read-only: %w", dir, err)
	}
	return nil
}

// setupDev mounts the minimal /dev on dir.
func setupDev(dir string, devFDs []int) error {
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=755"); err != nil {
		return fmt.Errorf("mount /dev: %w", err)
	}
	for i, d := range devices {
		p := filepath.Join(dir, d)
		f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o666)
		if err != nil {
			return fmt.Errorf("/dev/%s: %w", d, err)
		}
		f.Close()
		if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", devFDs[i]), p, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind /dev/%s: %w", d, err)
		}
	}
	for name, target := range map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2",
	} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("/dev/%s: %w", name, err)
		}
	}
	shm := filepath.Join(dir, "shm")
	if err := os.Mkdir(shm, 0o755); err != nil {
		return fmt.Errorf("/dev/shm: %w", err)
	}
	if err := mountTmpfs(shm, 0o1777); err != nil {
		return err
	}
	return setReadOnly(dir)
}

// loopbackUp brings up lo in the new network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	return nil
}

// Securebits (linux/securebits.h).
const (
	secbitNoroot                 = 1 << 0
	secbitNorootLocked           = 1 << 1
	secbitNoCapAmbientRaise      = 1 << 6
	secbitNoCapAmbientRaiseLockd = 1 << 7
)

// restrict applies the limits to the init, whence the command inherits
// them, and makes sure the command gains no privilege: no_new_privs (no
// setuid, no file capabilities), and when it stays ns root, securebits
// that withhold root's capabilities at execve.
func restrict(spec *Spec) error {
	for _, r := range spec.Limits.Rlimits() {
		if r.Value <= 0 {
			continue
		}
		// syscall.Setrlimit, not unix's: for RLIMIT_NOFILE it also stops
		// os.StartProcess from restoring the soft limit Go found at
		// startup.
		lim := syscall.Rlimit{Cur: uint64(r.Value), Max: uint64(r.Value)}
		if err := syscall.Setrlimit(r.Resource, &lim); err != nil {
			return fmt.Errorf("%s limit %d: %w", r.Name, r.Value, err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	if !spec.SetIDs {
		bits := secbitNoroot | secbitNorootLocked | secbitNoCapAmbientRaise | secbitNoCapAmbientRaiseLockd
		if err := unix.Prctl(unix.PR_SET_SECUREBITS, uintptr(bits), 0, 0, 0); err != nil {
			return fmt.Errorf("securebits: %w", err)
		}
	}
	return nil
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
