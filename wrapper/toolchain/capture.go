package toolchain

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/cas/digest"
	"github.com/kiln-build/kiln/internal/rpcstatus"
	"github.com/kiln-build/kiln/wrapper/cmdline"
)

// Capturer captures toolchain trees. Its fields inject the world; the zero
// value of a field means the real thing (see NewCapturer).
type Capturer struct {
	// Fn is the digest function of the trees.
	Fn digest.Function
	// Run runs a program with LC_ALL=C and returns its standard output;
	// it is used for the compiler's -print-prog-name queries and for ldd.
	Run func(ctx context.Context, name string, args ...string) ([]byte, error)
	// LookPath finds a program the driver runs by name (as) the way the
	// driver will: in PATH.
	LookPath func(name string) (string, error)
	// HostRoot is the directory that stands for "/" when reading files;
	// "/" except in tests.
	HostRoot string
}

// NewCapturer returns a Capturer of the host with SHA-256 digests.
func NewCapturer() *Capturer {
	return &Capturer{Fn: digest.SHA256, Run: runCommand, LookPath: exec.LookPath, HostRoot: "/"}
}

// Capture builds the input tree of the compiler at compilerPath with
// NewCapturer. See Capturer.Capture.
func Capture(ctx context.Context, compilerPath string) (*Tree, error) {
	return NewCapturer().Capture(ctx, compilerPath)
}

// Capture builds the input tree of a compiler: everything needed to
// compile preprocessed C and C++ with it (gcc -c -x cpp-output, with or
// without -gsplit-dwarf) in a hermetic sandbox whose root is the tree:
//
//   - the driver at compilerPath, and every symlink on the way to it
//     (/usr/bin/gcc -> gcc-12), which, like every symlink to a file, is a
//     file in the tree: a copy of the file it leads to;
//   - for gcc drivers, the programs the driver runs for a compile, found
//     as the driver finds them: cc1 and cc1plus (-print-prog-name, its own
//     directories), as and objcopy (-print-prog-name, then PATH; objcopy
//     only if present, it splits DWARF), and a specs file if gcc finds
//     one (-print-file-name=specs); clang is one binary;
//   - for every ELF program among them, its ELF interpreter (PT_INTERP)
//     and the shared libraries ldd lists, transitively;
//   - every directory and symlink to a directory that resolving these
//     paths passes through, so each resolves inside the tree as on the
//     host (on a merged-/usr system /lib64 -> usr/lib64 and /lib ->
//     usr/lib are symlinks in the tree, the files are under usr/).
//
// Nothing else: no headers (the input is preprocessed), no linker, no
// liblto_plugin.so (gcc 12's driver does not open it for -c; the chroot
// test proves it), no /etc/ld.so.cache (the loader's default directories
// suffice; libraries outside them are listed in Tree.LibraryPath). Without
// /tmp, gcc puts its temporary .s in the working directory.
//
// A driver that is a script ("#!") is FailedPrecondition: kiln must be
// pointed at the real compiler. Every file is hashed; see LoadOrCapture
// for the cached variant.
func (c *Capturer) Capture(ctx context.Context, compilerPath string) (*Tree, error) {
	compiler, err := c.absCompiler(compilerPath)
	if err != nil {
		return nil, err
	}
	r := newResolver(c.HostRoot)
	driver, err := r.add(compiler)
	if err != nil {
		return nil, err
	}
	if _, ok := r.files[driver]; !ok {
		return nil, status.Errorf(codes.FailedPrecondition, "compiler %s is not a file", compilerPath)
	}
	programs := []string{driver}
	var pathDirs []string
	kind := cmdline.KindOf(driver)
	if kind == cmdline.KindUnknown {
		kind = cmdline.KindOf(compiler)
	}
	if kind != cmdline.KindClang && kind != cmdline.KindClangXX {
		progs, dirs, err := c.gccPrograms(ctx, compiler, r)
		if err != nil {
			return nil, err
		}
		programs = append(programs, progs...)
		pathDirs = dirs
	}
	libDirs := map[string]bool{}
	for _, p := range programs {
		if err := c.addELFDependencies(ctx, p, r, libDirs); err != nil {
			return nil, err
		}
	}
	t, err := c.buildTree(ctx, r)
	if err != nil {
		return nil, err
	}
	t.Compiler = compiler
	t.PathEnv = strings.Join(pathDirs, ":")
	t.LibraryPath = sortedKeys(libDirs)
	return t, nil
}

// absCompiler returns the absolute path of the compiler, looking a bare
// name up in PATH.
func (c *Capturer) absCompiler(p string) (string, error) {
	if !strings.Contains(p, "/") {
		found, err := c.LookPath(p)
		if err != nil {
			return "", status.Errorf(codes.FailedPrecondition, "compiler %s: %v", p, err)
		}
		p = found
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", status.Errorf(codes.Internal, "compiler %s: %v", p, err)
	}
	return abs, nil
}

// gccPrograms adds the programs a gcc driver runs for a compile and
// returns their physical paths and the PATH directories in which programs
// run by name were found.
func (c *Capturer) gccPrograms(ctx context.Context, compiler string, r *resolver) (progs, pathDirs []string, err error) {
	ask := func(query string) (string, error) {
		out, err := c.Run(ctx, compiler, query)
		if err != nil {
			return "", rpcstatus.Wrapf(err, "%s %s", compiler, query)
		}
		return strings.TrimSpace(string(out)), nil
	}
	// cc1 and cc1plus live in gcc's own directory; -print-prog-name
	// prints the bare name when gcc has none.
	for _, name := range []string{"cc1", "cc1plus"} {
		p, err := ask("-print-prog-name=" + name)
		if err != nil {
			return nil, nil, err
		}
		if !path.IsAbs(p) {
			continue
		}
		phys, err := r.add(p)
		if err != nil {
			return nil, nil, err
		}
		progs = append(progs, phys)
	}
	if len(progs) == 0 {
		return nil, nil, status.Errorf(codes.FailedPrecondition, "%s finds neither cc1 nor cc1plus (-print-prog-name)", compiler)
	}
	// as and objcopy: gcc's directories first, then PATH at run time.
	for _, name := range []string{"as", "objcopy"} {
		p, err := ask("-print-prog-name=" + name)
		if err != nil {
			return nil, nil, err
		}
		if !path.IsAbs(p) {
			found, err := c.LookPath(p)
			if err != nil {
				if name == "as" {
					return nil, nil, status.Errorf(codes.FailedPrecondition, "%s runs %q, which is not in PATH: %v", compiler, p, err)
				}
				continue // without objcopy only -gsplit-dwarf fails
			}
			if found, err = filepath.Abs(found); err != nil {
				return nil, nil, status.Errorf(codes.Internal, "%s: %v", p, err)
			}
			if d := filepath.Dir(found); !contains(pathDirs, d) {
				pathDirs = append(pathDirs, d)
			}
			p = found
		}
		phys, err := r.add(p)
		if err != nil {
			return nil, nil, err
		}
		progs = append(progs, phys)
	}
	// A specs file changes what the driver does; gcc reads it if it finds
	// one. Debian has none.
	specs, err := ask("-print-file-name=specs")
	if err != nil {
		return nil, nil, err
	}
	if path.IsAbs(specs) {
		if _, err := r.add(specs); err != nil {
			return nil, nil, err
		}
	}
	return progs, pathDirs, nil
}

// defaultLibDir matches the directories the glibc loader searches without
// /etc/ld.so.cache: /lib, /usr/lib, their 64/32/x32 variants and their
// multiarch subdirectories (/lib/x86_64-linux-gnu).
var defaultLibDir = regexp.MustCompile(`^/(usr/)?lib(64|32|x32)?(/[a-z0-9_]+-linux-[a-z0-9_]+)?$`)

// addELFDependencies adds the interpreter and shared libraries of the
// program at physical in-root path p, if it is a dynamic ELF file, and
// records library directories outside the loader's defaults in libDirs.
func (c *Capturer) addELFDependencies(ctx context.Context, p string, r *resolver, libDirs map[string]bool) error {
	host := r.host(p)
	f, err := os.Open(host)
	if err != nil {
		return fileError(err, "open %s", p)
	}
	defer f.Close()
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil {
		return status.Errorf(codes.FailedPrecondition, "%s: %v", p, err)
	}
	if string(magic[:2]) == "#!" {
		return status.Errorf(codes.FailedPrecondition, "%s is a script, not a compiler binary: point kiln at the real compiler", p)
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		return status.Errorf(codes.FailedPrecondition, "%s is not an ELF program: %v", p, err)
	}
	interp := ""
	for _, prog := range ef.Progs {
		if prog.Type == elf.PT_INTERP {
			data, err := io.ReadAll(prog.Open())
			if err != nil {
				return status.Errorf(codes.FailedPrecondition, "%s: read PT_INTERP: %v", p, err)
			}
			interp = string(bytes.TrimRight(data, "\x00"))
		}
	}
	if interp == "" {
		return nil // static
	}
	if _, err := r.add(interp); err != nil {
		return err
	}
	out, err := c.Run(ctx, "ldd", host)
	if err != nil {
		return rpcstatus.Wrapf(err, "ldd %s", p)
	}
	libs, err := parseLdd(out)
	if err != nil {
		return rpcstatus.Wrapf(err, "ldd %s", p)
	}
	for _, lib := range libs {
		if _, err := r.add(lib); err != nil {
			return err
		}
		if d := path.Dir(lib); !defaultLibDir.MatchString(d) {
			libDirs[d] = true
		}
	}
	return nil
}

// parseLdd returns the paths in ldd's output: "name => /path (0x...)" and
// "/path (0x...)" lines (the interpreter). The vDSO has no file and is
// skipped; a "not found" library is an error naming every missing one.
func parseLdd(out []byte) ([]string, error) {
	var libs, missing []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line == "statically linked" {
			continue
		}
		if name, rest, ok := strings.Cut(line, " => "); ok {
			rest = strings.TrimSpace(rest)
			if rest == "not found" {
				missing = append(missing, name)
				continue
			}
			if i := strings.Index(rest, " (0x"); i >= 0 {
				rest = rest[:i]
			}
			if path.IsAbs(rest) {
				libs = append(libs, rest)
			}
			continue // "linux-vdso.so.1 =>  (0x...)" on old glibc
		}
		if i := strings.Index(line, " (0x"); i >= 0 && path.IsAbs(line[:i]) {
			libs = append(libs, line[:i])
		}
	}
	if len(missing) > 0 {
		return nil, status.Errorf(codes.FailedPrecondition, "libraries not found: %s", strings.Join(missing, ", "))
	}
	return libs, nil
}

// buildTree hashes the resolver's files (in parallel) and assembles the
// tree.
func (c *Capturer) buildTree(ctx context.Context, r *resolver) (*Tree, error) {
	files := make([]hostFile, 0, len(r.files))
	for _, f := range r.files {
		files = append(files, f)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	digests := make([]digest.Digest, len(files))
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i, f := range files {
		g.Go(func() error {
			if err := ctx.Err(); err != nil {
				return err
			}
			d, err := hashFile(c.Fn, f.host)
			if err != nil {
				return err
			}
			if d.Size() != f.info.Size() {
				return status.Errorf(codes.Aborted, "%s changed while it was hashed", f.host)
			}
			digests[i] = d
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	b := newBuilder(c.Fn)
	byPath := make(map[string]File, len(files))
	for i, f := range files {
		file := File{Path: f.path[1:], HostPath: f.host, Digest: digests[i], Executable: f.info.Mode()&0o111 != 0}
		byPath[f.path] = file
		if err := b.addFile(file); err != nil {
			return nil, err
		}
	}
	for _, d := range sortedKeys(r.dirs) {
		if err := b.addDir(d[1:]); err != nil {
			return nil, err
		}
	}
	var copied []Symlink
	for _, l := range sortedKeys(r.symlinks) {
		// A link that leads to a file of the tree becomes a copy of that
		// file (a second hardlink on the worker): every symlink is an
		// inode the worker creates and removes for each action, and on
		// ext4 without a journal that costs 0.3-0.5 ms under load. Links
		// to directories stay links.
		phys, err := r.add(l)
		if err != nil {
			return nil, err
		}
		if f, ok := byPath[phys]; ok {
			f.Path = l[1:]
			if err := b.addFile(f); err != nil {
				return nil, err
			}
			copied = append(copied, Symlink{Path: l[1:], Target: r.symlinks[l]})
			continue
		}
		target, err := treeTarget(l, r.symlinks[l], r.add)
		if err != nil {
			return nil, err
		}
		if err := b.addSymlink(l[1:], target); err != nil {
			return nil, err
		}
	}
	t, err := b.build()
	if err != nil {
		return nil, err
	}
	t.CopiedLinks = copied
	return t, nil
}

// hashFile returns the digest of the file at p.
func hashFile(fn digest.Function, p string) (digest.Digest, error) {
	f, err := os.Open(p)
	if err != nil {
		return digest.Digest{}, fileError(err, "hash %s", p)
	}
	defer f.Close()
	h := fn.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return digest.Digest{}, status.Errorf(codes.Internal, "hash %s: %v", p, err)
	}
	return digest.FromHash(fn, h.Sum(nil), n), nil
}

// runCommand runs name with args in the C locale and returns its standard
// output; a failure includes the standard error.
func runCommand(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
