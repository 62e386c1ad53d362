//go:build cgo

// The sandbox init, in C: see cinit.go for why and spec.go for the
// protocol. A constructor takes over a process started as
// "kiln-sandbox-init" before the Go runtime starts, and never returns.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "init.h"

#define SPEC_FD 3
#define REPORT_FD 4
#define SYNC_FD 5

// mount_setattr(2), named apart from libc's declarations.
struct kiln_mount_attr {
	uint64_t attr_set, attr_clr, propagation, userns_fd;
};
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#define K_MOUNT_ATTR_RDONLY 0x1
#define K_MOUNT_ATTR_NOSUID 0x2
#define K_MOUNT_ATTR_NODEV 0x4
#define K_AT_RECURSIVE 0x8000

// Securebits (linux/securebits.h).
#define SECBIT_NOROOT_ (1 << 0)
#define SECBIT_NOROOT_LOCKED_ (1 << 1)
#define SECBIT_NO_CAP_AMBIENT_RAISE_ (1 << 6)
#define SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED_ (1 << 7)

// ---- errors ----

// The failure being reported: its code and message (kiln_report.message
// points here).
static char err_msg[4096];
static uint32_t err_code;

// errstr is strerror(e) in Go's spelling: lower case first letter.
static const char *errstr(int e) {
	static char buf[128];
	snprintf(buf, sizeof buf, "%s", strerror(e));
	if (buf[0] >= 'A' && buf[0] <= 'Z' && !(buf[1] >= 'A' && buf[1] <= 'Z')) buf[0] += 'a' - 'A';
	return buf;
}

// failf records a failure and returns -1. Messages are built from the
// innermost step outwards with prefixf.
static int failf(uint32_t code, const char *fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err_msg, sizeof err_msg, fmt, ap);
	va_end(ap);
	err_code = code;
	return -1;
}

// sysfail records "what: strerror(errno)" as Internal.
static int sysfail(const char *what) { return failf(KILN_CODE_INTERNAL, "%s: %s", what, errstr(errno)); }

// prefixf puts fmt's text in front of the recorded message.
static void prefixf(const char *fmt, ...) {
	char pre[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(pre, sizeof pre, fmt, ap);
	va_end(ap);
	size_t pl = strlen(pre), ml = strlen(err_msg);
	if (pl + ml >= sizeof err_msg) ml = sizeof err_msg - 1 - pl; // the end goes
	memmove(err_msg + pl, err_msg, ml);
	memcpy(err_msg, pre, pl);
	err_msg[pl + ml] = 0;
}

// utf8_decode returns the length (1-4) of the valid UTF-8 sequence at s,
// with its rune in *r, or 0 if there is none, as Go decides: no overlong
// forms, no surrogates, nothing above U+10FFFF.
static int utf8_decode(const unsigned char *s, uint32_t *r) {
	unsigned char c = s[0];
	int n;
	uint32_t min;
	if (c < 0x80) {
		*r = c;
		return 1;
	} else if ((c & 0xe0) == 0xc0) {
		n = 2, *r = c & 0x1f, min = 0x80;
	} else if ((c & 0xf0) == 0xe0) {
		n = 3, *r = c & 0x0f, min = 0x800;
	} else if ((c & 0xf8) == 0xf0) {
		n = 4, *r = c & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	for (int i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80) return 0; // a NUL stops here too
		*r = *r << 6 | (s[i] & 0x3f);
	}
	if (*r < min || *r > 0x10ffff || (*r >= 0xd800 && *r <= 0xdfff)) return 0;
	return n;
}

// printable is Go's strconv.IsPrint for ASCII, and beyond it a close
// approximation without Unicode's tables: everything but the C1
// controls, spaces other than U+0020, the format characters in common
// use, private use and noncharacters (Go also escapes unassigned runes).
static int printable(uint32_t r) {
	if (r < 0x80) return r >= 0x20 && r < 0x7f;
	if (r <= 0xa0 || r == 0xad || r == 0x1680 || r == 0x3000 || r == 0xfeff) return 0;
	if ((r >= 0x2000 && r <= 0x200f) || (r >= 0x2028 && r <= 0x202f) || (r >= 0x205f && r <= 0x206f)) return 0;
	if ((r >= 0xe000 && r <= 0xf8ff) || r >= 0xf0000 || (r >= 0xfff9 && r <= 0xfffb) || (r & 0xfffe) == 0xfffe) return 0;
	return 1;
}

const char *kiln_quote(const char *str, char *out, size_t n) {
	const unsigned char *s = (const unsigned char *)str;
	size_t j = 0;
	if (n < 16) return "";
	out[j++] = '"';
	while (*s && j + 12 < n) { // room for the longest escape and the closing quote
		uint32_t r;
		int len = utf8_decode(s, &r);
		const char *esc = NULL;
		switch (len ? r : 0x100) {
		case '"': esc = "\\\""; break;
		case '\\': esc = "\\\\"; break;
		case '\a': esc = "\\a"; break;
		case '\b': esc = "\\b"; break;
		case '\f': esc = "\\f"; break;
		case '\n': esc = "\\n"; break;
		case '\r': esc = "\\r"; break;
		case '\t': esc = "\\t"; break;
		case '\v': esc = "\\v"; break;
		}
		if (esc) {
			j += (size_t)snprintf(out + j, n - j, "%s", esc);
		} else if (len == 0 || r < 0x80) {
			if (len && printable(r))
				out[j++] = (char)r;
			else
				j += (size_t)snprintf(out + j, n - j, "\\x%02x", *s);
			len = 1;
		} else if (printable(r)) {
			memcpy(out + j, s, (size_t)len);
			j += (size_t)len;
		} else {
			j += (size_t)snprintf(out + j, n - j, r < 0x10000 ? "\\u%04x" : "\\U%08x", r);
		}
		s += len;
	}
	out[j++] = '"';
	out[j] = 0;
	return out;
}

// ---- the spec ----

struct cursor {
	const unsigned char *p;
	size_t n;
};

static int get_u32(struct cursor *c, uint32_t *v) {
	if (c->n < 4) return -1;
	*v = (uint32_t)c->p[0] | (uint32_t)c->p[1] << 8 | (uint32_t)c->p[2] << 16 | (uint32_t)c->p[3] << 24;
	c->p += 4;
	c->n -= 4;
	return 0;
}

static int get_i64(struct cursor *c, int64_t *v) {
	uint32_t lo, hi;
	if (get_u32(c, &lo) < 0 || get_u32(c, &hi) < 0) return -1;
	*v = (int64_t)((uint64_t)hi << 32 | lo);
	return 0;
}

// get_str reads a length-prefixed string without NUL bytes into a new
// NUL-terminated copy.
static int get_str(struct cursor *c, char **s) {
	uint32_t len;
	if (get_u32(c, &len) < 0 || len > c->n || memchr(c->p, 0, len)) return -1;
	*s = malloc((size_t)len + 1);
	if (!*s) return -1;
	memcpy(*s, c->p, len);
	(*s)[len] = 0;
	c->p += len;
	c->n -= len;
	return 0;
}

// get_list reads a count and that many strings into a NULL-terminated
// array.
static int get_list(struct cursor *c, char ***list, uint32_t *count) {
	uint32_t n;
	if (get_u32(c, &n) < 0 || n > c->n / 4) return -1; // each string takes 4 bytes at least
	*list = calloc((size_t)n + 1, sizeof **list);
	if (!*list) return -1;
	for (uint32_t i = 0; i < n; i++) {
		if (get_str(c, &(*list)[i]) < 0) return -1;
	}
	if (count) *count = n;
	return 0;
}

static void free_list(char **l) {
	if (!l) return;
	for (char **p = l; *p; p++) free(*p);
	free(l);
}

void kiln_free_spec(struct kiln_spec *s) {
	free(s->dir);
	free(s->build_dir);
	free_list(s->args);
	free_list(s->env);
	free_list(s->covers);
	memset(s, 0, sizeof *s);
}

int kiln_parse_spec(const unsigned char *data, size_t n, struct kiln_spec *s) {
	struct cursor c = {data, n};
	memset(s, 0, sizeof *s);
	uint32_t magic;
	int ok = get_u32(&c, &magic) == 0 && magic == KILN_SPEC_MAGIC && get_u32(&c, &s->flags) == 0 &&
		 (s->flags & ~(uint32_t)KILN_SPEC_KNOWN) == 0 && get_u32(&c, &s->uid) == 0 && get_u32(&c, &s->gid) == 0;
	for (int i = 0; ok && i < KILN_LIMITS; i++) ok = get_i64(&c, &s->limits[i]) == 0;
	ok = ok && get_str(&c, &s->dir) == 0 && get_str(&c, &s->build_dir) == 0 && get_list(&c, &s->args, &s->nargs) == 0 &&
	     get_list(&c, &s->env, NULL) == 0 && get_list(&c, &s->covers, NULL) == 0 && c.n == 0;
	if (ok && (s->nargs == 0 || s->dir[0] != '/' || s->build_dir[0] != '/')) ok = 0;
	if (!ok) {
		kiln_free_spec(s);
		return -1;
	}
	return 0;
}

// read_all reads fd to its end, up to max bytes.
static unsigned char *read_all(int fd, size_t max, size_t *n) {
	size_t cap = 4096, len = 0;
	unsigned char *b = malloc(cap);
	if (!b) return NULL;
	for (;;) {
		if (len == cap) {
			if (cap >= max) {
				errno = EFBIG;
				free(b);
				return NULL;
			}
			cap *= 2;
			unsigned char *nb = realloc(b, cap);
			if (!nb) {
				free(b);
				return NULL;
			}
			b = nb;
		}
		ssize_t r = read(fd, b + len, cap - len);
		if (r < 0 && errno == EINTR) continue;
		if (r < 0) {
			free(b);
			return NULL;
		}
		if (r == 0) break;
		len += (size_t)r;
	}
	*n = len;
	return b;
}

// ---- the report ----

static void put_u32(unsigned char **p, uint32_t v) {
	for (int i = 0; i < 4; i++) *(*p)++ = (unsigned char)(v >> (8 * i));
}

static void put_i64(unsigned char **p, int64_t v) {
	put_u32(p, (uint32_t)((uint64_t)v & 0xffffffffu));
	put_u32(p, (uint32_t)((uint64_t)v >> 32));
}

size_t kiln_encode_report(const struct kiln_report *r, unsigned char *buf, size_t n) {
	size_t mlen = r->message ? strlen(r->message) : 0;
	size_t need = 4 * 4 + mlen + 4 + 3 * 8;
	if (need > n) return 0;
	unsigned char *p = buf;
	put_u32(&p, KILN_REPORT_MAGIC);
	put_u32(&p, r->code);
	put_u32(&p, (uint32_t)mlen);
	memcpy(p, r->message ? r->message : "", mlen);
	p += mlen;
	put_u32(&p, (uint32_t)r->exit_code);
	put_u32(&p, r->signal);
	put_i64(&p, r->user_ns);
	put_i64(&p, r->system_ns);
	put_i64(&p, r->max_rss_bytes);
	return (size_t)(p - buf);
}

// ---- setting up the sandbox ----

// path_join writes dir/name into out (PATH_MAX); "/" joins without a
// second slash.
static int path_join(char *out, const char *dir, const char *name) {
	int n = snprintf(out, PATH_MAX, "%s%s%s", dir, strcmp(dir, "/") == 0 ? "" : "/", name);
	if (n < 0 || n >= PATH_MAX) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

static int mount_setattr_(const char *path, unsigned flags, uint64_t set, uint64_t clr) {
	struct kiln_mount_attr a = {.attr_set = set, .attr_clr = clr};
	return (int)syscall(SYS_mount_setattr, -1, path, flags, &a, sizeof a);
}

// bind_fd binds the directory or file open as fd onto target, writable,
// nosuid and nodev.
static int bind_fd(int fd, const char *target) {
	char src[64];
	snprintf(src, sizeof src, "/proc/self/fd/%d", fd);
	if (mount(src, target, NULL, MS_BIND, NULL) < 0) return failf(KILN_CODE_INTERNAL, "bind %s: %s", target, errstr(errno));
	if (mount_setattr_(target, 0, K_MOUNT_ATTR_NOSUID | K_MOUNT_ATTR_NODEV, K_MOUNT_ATTR_RDONLY) < 0)
		return failf(KILN_CODE_INTERNAL, "make %s writable: %s", target, errstr(errno));
	return 0;
}

// mount_tmpfs mounts an empty tmpfs, owned by root, on dir.
static int mount_tmpfs(const char *dir, unsigned mode) {
	char opt[32];
	snprintf(opt, sizeof opt, "mode=%o", mode);
	if (mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, opt) < 0)
		return failf(KILN_CODE_INTERNAL, "mount a tmpfs on %s: %s", dir, errstr(errno));
	return 0;
}

static int set_read_only(const char *dir) {
	if (mount_setattr_(dir, 0, K_MOUNT_ATTR_RDONLY, 0) < 0)
		return failf(KILN_CODE_INTERNAL, "make %s read-only: %s", dir, errstr(errno));
	return 0;
}

// mkdir_all creates dir and its missing parents.
static int mkdir_all(const char *dir) {
	char p[PATH_MAX];
	if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) {
		errno = ENAMETOOLONG;
		return -1;
	}
	for (char *s = p + 1;; s++) {
		if (*s == '/' || *s == 0) {
			char c = *s;
			*s = 0;
			if (mkdir(p, 0755) < 0 && errno != EEXIST) return -1;
			*s = c;
			if (c == 0) return 0;
		}
	}
}

// devices are the nodes of the sandbox's /dev, bound from the host's.
static const char *const devices[] = {"null", "zero", "full", "random", "urandom"};
#define NDEVICES (sizeof devices / sizeof devices[0])

// setup_dev mounts the minimal /dev on dir.
static int setup_dev(const char *dir, const int *dev_fds) {
	char p[PATH_MAX], what[64];
	if (mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755") < 0) return sysfail("mount /dev");
	for (size_t i = 0; i < NDEVICES; i++) {
		snprintf(what, sizeof what, "/dev/%s", devices[i]);
		if (path_join(p, dir, devices[i]) < 0) return sysfail(what);
		int fd = open(p, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0666);
		if (fd < 0) return sysfail(what);
		close(fd);
		char src[64];
		snprintf(src, sizeof src, "/proc/self/fd/%d", dev_fds[i]);
		if (mount(src, p, NULL, MS_BIND, NULL) < 0) return failf(KILN_CODE_INTERNAL, "bind %s: %s", what, errstr(errno));
	}
	static const char *const links[][2] = {
	    {"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"}};
	for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
		snprintf(what, sizeof what, "/dev/%s", links[i][0]);
		if (path_join(p, dir, links[i][0]) < 0 || symlink(links[i][1], p) < 0) return sysfail(what);
	}
	if (path_join(p, dir, "shm") < 0 || mkdir(p, 0755) < 0) return sysfail("/dev/shm");
	if (mount_tmpfs(p, 01777) < 0) return -1;
	return set_read_only(dir);
}

// loopback_up brings up lo in the new network namespace.
static int loopback_up(void) {
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) return sysfail("loopback");
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	strcpy(ifr.ifr_name, "lo");
	int r = 0;
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) {
		r = sysfail("loopback flags");
	} else {
		ifr.ifr_flags |= IFF_UP;
		if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0) r = sysfail("loopback up");
	}
	close(fd);
	return r;
}

// setup builds the command's view of the system:
//
//	host:     /            the host's, read-only and nosuid, recursively
//	          /tmp         an empty tmpfs
//	          covers       empty read-only tmpfs each
//	          build_dir    the build directory, writable, at its own path
//	hermetic: /            the build directory, writable
//	both:     /dev         a read-only tmpfs: null zero full random urandom,
//	                       fd stdin stdout stderr, and a writable shm
//	          /proc        the PID namespace's own
//
// plus the hostname "localhost" and, without network, loopback up.
static int setup(const struct kiln_spec *s) {
	int hermetic = (s->flags & KILN_SPEC_HERMETIC) != 0;
	if (sethostname("localhost", 9) < 0) return sysfail("sethostname");
	if (!(s->flags & KILN_SPEC_NETWORK) && loopback_up() < 0) return -1;
	// Nothing done here propagates back to the host.
	if (mount("", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) return sysfail("make / private");
	// Descriptors of what later mounts hide.
	int dev_fds[NDEVICES];
	char p[PATH_MAX];
	for (size_t i = 0; i < NDEVICES; i++) {
		snprintf(p, sizeof p, "/dev/%s", devices[i]);
		if ((dev_fds[i] = open(p, O_PATH | O_CLOEXEC)) < 0) {
			char what[64];
			snprintf(what, sizeof what, "open /dev/%s", devices[i]);
			return sysfail(what);
		}
	}
	int build_fd = open(s->build_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (build_fd < 0) return sysfail("open the build directory");

	const char *root = "/";
	if (hermetic) {
		root = s->build_dir;
		if (bind_fd(build_fd, root) < 0) return -1;
		if (path_join(p, root, "tmp") < 0) return sysfail("tmp");
		if (mount_tmpfs(p, 01777) < 0) return -1;
	} else {
		// Everything read-only and nosuid, in one call that reaches
		// every mount below /.
		if (mount_setattr_("/", K_AT_RECURSIVE, K_MOUNT_ATTR_RDONLY | K_MOUNT_ATTR_NOSUID, 0) < 0)
			return sysfail("make / read-only");
		for (char **c = s->covers; *c; c++) {
			if (mount_tmpfs(*c, 0755) < 0) return -1;
		}
		if (mount_tmpfs("/tmp", 01777) < 0) return -1;
		if (mkdir_all(s->build_dir) < 0) return sysfail("build directory mount point");
		if (bind_fd(build_fd, s->build_dir) < 0) return -1;
		for (char **c = s->covers; *c; c++) {
			if (set_read_only(*c) < 0) return -1;
		}
	}
	if (path_join(p, root, "dev") < 0 || setup_dev(p, dev_fds) < 0) return -1;
	if (path_join(p, root, "proc") < 0 || mount("proc", p, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		return sysfail("mount /proc");
	for (size_t i = 0; i < NDEVICES; i++) close(dev_fds[i]);
	close(build_fd);
	if (hermetic) {
		// pivot_root(".", ".") stacks the old root on the new one; the
		// detach then drops it, and the host with it.
		if (chdir(root) < 0) return sysfail("chdir");
		if (syscall(SYS_pivot_root, ".", ".") < 0) return sysfail("pivot_root");
		if (umount2(".", MNT_DETACH) < 0) return sysfail("detach the host's root");
	}
	if (s->flags & KILN_SPEC_PROBE) return 0;
	if (chdir(s->dir) < 0) return failf(KILN_CODE_INTERNAL, "working directory %s: %s", s->dir, errstr(errno));
	return 0;
}

// restrict_ applies the limits to the init, whence the command inherits
// them, and makes sure the command gains no privilege: no_new_privs (no
// setuid, no file capabilities), and when it stays ns root, securebits
// that withhold root's capabilities at execve.
static int restrict_(const struct kiln_spec *s) {
	static const int resources[KILN_LIMITS] = {RLIMIT_NPROC, RLIMIT_NOFILE, RLIMIT_FSIZE, RLIMIT_DATA};
	static const char *const names[KILN_LIMITS] = {"processes", "open files", "file size", "memory"};
	for (int i = 0; i < KILN_LIMITS; i++) {
		if (s->limits[i] <= 0) continue;
		struct rlimit l = {(rlim_t)s->limits[i], (rlim_t)s->limits[i]};
		if (setrlimit(resources[i], &l) < 0)
			return failf(KILN_CODE_INTERNAL, "%s limit %lld: %s", names[i], (long long)s->limits[i], errstr(errno));
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return sysfail("no_new_privs");
	if (!(s->flags & KILN_SPEC_SETIDS)) {
		int bits = SECBIT_NOROOT_ | SECBIT_NOROOT_LOCKED_ | SECBIT_NO_CAP_AMBIENT_RAISE_ | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED_;
		if (prctl(PR_SET_SECUREBITS, bits, 0, 0, 0) < 0) return sysfail("securebits");
	}
	return 0;
}

// ---- finding and running the command ----

enum { EXEC_OK, EXEC_NOT_FOUND, EXEC_IS_DIR, EXEC_NOT_EXECUTABLE };

static const char *const exec_problem[] = {"", "not found", "is a directory", "is not executable"};

// check_executable says whether p is a file the command may execute.
static int check_executable(const char *p) {
	struct stat st;
	if (stat(p, &st) < 0) return EXEC_NOT_FOUND;
	if (S_ISDIR(st.st_mode)) return EXEC_IS_DIR;
	if (access(p, X_OK) < 0) return EXEC_NOT_EXECUTABLE;
	return EXEC_OK;
}

// join_rel writes d/name into out, d relative to dir unless absolute.
static int join_rel(char *out, const char *dir, const char *d, const char *name) {
	int n = d[0] == '/' ? snprintf(out, PATH_MAX, "%s/%s", d, name) : snprintf(out, PATH_MAX, "%s/%s/%s", dir, d, name);
	return n < 0 || n >= PATH_MAX ? -1 : 0;
}

// look_path resolves the program as sandboxinit.LookPath does: a name with
// a '/' is a path, relative to dir unless absolute; a bare name is
// searched in the PATH of env (the last one; empty and relative entries
// are relative to dir), else in the default PATH.
static int look_path(const struct kiln_spec *s, char *out) {
	const char *prog = s->args[0];
	char q[1024];
	if (strchr(prog, '/')) {
		int n = prog[0] == '/' ? snprintf(out, PATH_MAX, "%s", prog) : snprintf(out, PATH_MAX, "%s/%s", s->dir, prog);
		int r = n < 0 || n >= PATH_MAX ? EXEC_NOT_FOUND : check_executable(out);
		if (r != EXEC_OK) return failf(KILN_CODE_INVALID_ARGUMENT, "program %s %s", kiln_quote(prog, q, sizeof q), exec_problem[r]);
		return 0;
	}
	const char *search = KILN_DEFAULT_PATH;
	int set = 0;
	for (char **e = s->env; *e; e++) {
		if (strncmp(*e, "PATH=", 5) == 0) search = *e + 5, set = 1;
	}
	int last = EXEC_OK;
	for (const char *d = search;;) {
		const char *end = strchr(d, ':');
		size_t len = end ? (size_t)(end - d) : strlen(d);
		char entry[PATH_MAX];
		if (len < sizeof entry) { // a longer entry names nothing that exists
			memcpy(entry, d, len);
			entry[len] = 0;
			if (len == 0) strcpy(entry, ".");
		}
		if (len < sizeof entry && join_rel(out, s->dir, entry, prog) == 0) {
			int r = check_executable(out);
			if (r == EXEC_OK) return 0;
			if (r != EXEC_NOT_FOUND) last = r;
		}
		if (!end) break;
		d = end + 1;
	}
	char where[PATH_MAX + 64];
	if (set)
		snprintf(where, sizeof where, "the command's PATH %s", search);
	else
		snprintf(where, sizeof where, "the default PATH %s (the command sets no PATH)", KILN_DEFAULT_PATH);
	if (last != EXEC_OK)
		return failf(KILN_CODE_INVALID_ARGUMENT, "program %s found in %s, but %s", kiln_quote(prog, q, sizeof q), where, exec_problem[last]);
	return failf(KILN_CODE_INVALID_ARGUMENT, "program %s not found in %s", kiln_quote(prog, q, sizeof q), where);
}

// run_command starts the command and, as PID 1, reaps every process that
// ends up here until the command itself ends.
static int run_command(const struct kiln_spec *s, const char *prog, struct kiln_report *rep) {
	int errp[2];
	if (pipe2(errp, O_CLOEXEC) < 0) return sysfail("sandbox init: pipe");
	pid_t pid = fork();
	if (pid < 0) return sysfail("sandbox init: fork");
	if (pid == 0) {
		int e = 0;
		if ((s->flags & KILN_SPEC_SETIDS) && (setgroups(0, NULL) < 0 || setgid(s->gid) < 0 || setuid(s->uid) < 0)) {
			e = errno;
		} else {
			execve(prog, s->args, s->env);
			e = errno;
		}
		ssize_t w = write(errp[1], &e, sizeof e);
		(void)w;
		_exit(127);
	}
	close(errp[1]);
	int e;
	ssize_t r;
	while ((r = read(errp[0], &e, sizeof e)) < 0 && errno == EINTR) {
	}
	close(errp[0]);
	char q[1024];
	if (r == (ssize_t)sizeof e) {
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
		}
		if (e == EACCES || e == ENOEXEC || e == ENOENT) {
			// ENOENT here is a missing interpreter or ELF loader.
			return failf(KILN_CODE_INVALID_ARGUMENT, "program %s cannot be executed: %s", kiln_quote(s->args[0], q, sizeof q), errstr(e));
		}
		return failf(KILN_CODE_INTERNAL, "start %s: %s", kiln_quote(s->args[0], q, sizeof q), errstr(e));
	}
	for (;;) {
		int st;
		struct rusage ru;
		pid_t w = wait4(-1, &st, 0, &ru);
		if (w < 0 && errno == EINTR) continue;
		if (w < 0) return sysfail("sandbox init: wait");
		if (w != pid) continue;
		if (WIFSIGNALED(st)) {
			rep->exit_code = 128 + WTERMSIG(st);
			rep->signal = (uint32_t)WTERMSIG(st);
		} else {
			rep->exit_code = WEXITSTATUS(st);
		}
		rep->user_ns = (int64_t)ru.ru_utime.tv_sec * 1000000000 + (int64_t)ru.ru_utime.tv_usec * 1000;
		rep->system_ns = (int64_t)ru.ru_stime.tv_sec * 1000000000 + (int64_t)ru.ru_stime.tv_usec * 1000;
		rep->max_rss_bytes = (int64_t)ru.ru_maxrss * 1024;
		return 0;
	}
}

// run_spec sets up the sandbox and runs the command; the init is then PID
// 1 of a PID namespace, root of its user namespace.
static int run_spec(const struct kiln_spec *s, struct kiln_report *rep) {
	if (setup(s) < 0) {
		prefixf("sandbox init (%s mode): ", s->flags & KILN_SPEC_HERMETIC ? "hermetic" : "host");
		return -1;
	}
	if (restrict_(s) < 0) {
		prefixf("sandbox init: ");
		return -1;
	}
	if (s->flags & KILN_SPEC_PROBE) return 0;
	char prog[PATH_MAX];
	if (look_path(s, prog) < 0) return -1;
	return run_command(s, prog, rep);
}

// init_main is the init proper: it reads the spec on fd 3, runs it and
// writes the report on fd 4. Its stdout and stderr are the action's.
static void init_main(void) {
	if (getpid() != 1) {
		static const char m[] = "kiln sandbox init: not PID 1 of a new PID namespace\n";
		ssize_t w = write(2, m, sizeof m - 1);
		(void)w;
		_exit(2);
	}
	fcntl(SPEC_FD, F_SETFD, FD_CLOEXEC);
	fcntl(REPORT_FD, F_SETFD, FD_CLOEXEC);
	struct kiln_report rep;
	memset(&rep, 0, sizeof rep);
	size_t n = 0;
	unsigned char *data = read_all(SPEC_FD, KILN_SPEC_MAX, &n);
	close(SPEC_FD);
	struct kiln_spec spec;
	int r;
	if (!data) {
		r = failf(KILN_CODE_INTERNAL, "sandbox init: read the spec: %s", errstr(errno));
	} else if (kiln_parse_spec(data, n, &spec) < 0) {
		r = failf(KILN_CODE_INTERNAL, "sandbox init: read the spec: malformed (%zu bytes)", n);
	} else {
		r = run_spec(&spec, &rep);
	}
	if (r < 0) {
		memset(&rep, 0, sizeof rep);
		rep.code = err_code ? err_code : KILN_CODE_INTERNAL;
		rep.message = err_msg;
	}
	static unsigned char out[sizeof err_msg + 64];
	size_t len = kiln_encode_report(&rep, out, sizeof out);
	for (size_t off = 0; off < len;) {
		ssize_t w = write(REPORT_FD, out + off, len - off);
		if (w < 0 && errno == EINTR) continue;
		if (w <= 0) _exit(2);
		off += (size_t)w;
	}
	_exit(0);
}

// ---- entering the namespaces ----

static void fail(const char *what) {
	char msg[256];
	int n = snprintf(msg, sizeof msg, "kiln sandbox init: %s: %s\n", what, strerror(errno));
	if (n > 0) {
		ssize_t w = write(2, msg, (size_t)n);
		(void)w;
	}
	_exit(2);
}

// child is the init proper, once forked.
static volatile pid_t child;

// on_term kills the init proper, and so its PID namespace; this process
// then reaps it and exits, once the namespace is empty. The worker stops
// an action this way (SIGKILL here would leave it to PR_SET_PDEATHSIG,
// without waiting for the namespace to die).
static void on_term(int sig) {
	(void)sig;
	if (child > 0)
		kill(child, SIGKILL);
	else
		_exit(128 + SIGKILL);
}

__attribute__((constructor)) static void kiln_sandbox_init(int argc, char **argv, char **envp) {
	(void)envp;
	if (argc < 1 || !argv || !argv[0] || strcmp(argv[0], KILN_INIT_ARG0) != 0) return;
	const char *env = getenv(KILN_INIT_ENV);
	if (!env || !*env) {
		errno = EINVAL;
		fail(KILN_INIT_ENV " is not set");
	}
	char *end;
	unsigned long flags = strtoul(env, &end, 16);
	if (*end != 0) fail("bad " KILN_INIT_ENV);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_term;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL) < 0) fail("sigaction");
	if (unshare((int)flags) < 0) fail("unshare");
	char c = 'u';
	if (write(SYNC_FD, &c, 1) != 1) fail("tell the worker");
	ssize_t r;
	while ((r = read(SYNC_FD, &c, 1)) < 0 && errno == EINTR) {
	}
	if (r != 1 || c != 'm') fail("wait for the id maps");
	close(SYNC_FD);
	// The child learns here whether this process died before it asked to
	// die with it: the pipe's write end is only this process's.
	int alive[2];
	if (pipe2(alive, O_CLOEXEC) < 0) fail("pipe");
	sigset_t term, old;
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	sigprocmask(SIG_BLOCK, &term, &old); // until child is set
	pid_t pid = fork();
	if (pid < 0) fail("fork");
	if (pid == 0) {
		signal(SIGTERM, SIG_DFL);
		sigprocmask(SIG_SETMASK, &old, NULL);
		close(alive[1]);
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) fail("prctl");
		struct pollfd p = {alive[0], POLLIN, 0};
		if (poll(&p, 1, 0) > 0) _exit(2); // the parent is gone
		close(alive[0]);
		init_main();
	}
	child = pid;
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(alive[0]);
	// The init proper holds the action's descriptors; this process keeps
	// none, so that the worker sees the report's end when the init ends.
	for (int fd = 0; fd < 5; fd++) close(fd);
	int status;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) _exit(2);
	}
	if (WIFEXITED(status)) _exit(WEXITSTATUS(status));
	_exit(128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0));
}
