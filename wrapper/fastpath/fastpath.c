// The kiln command's C fast path: see doc.go. Every function here mirrors
// a Go function named in its comment; fastpath_test.go checks that they
// agree, on tables and by fuzzing.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <stdint.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "fastpath.h"

struct kiln_opt {
	const char *name;
	unsigned char separate, joined_only, query;
};

#include "optab.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))


static int has_suffix(const char *s, size_t n, const char *suf) {
	size_t m = strlen(suf);
	return n >= m && memcmp(s + n - m, suf, m) == 0;
}

// copy_n writes s[0:len] and a NUL to out; -1 if it does not fit.
static int copy_n(const char *s, size_t len, char *out, size_t n) {
	if (len + 1 > n) return -1;
	memcpy(out, s, len);
	out[len] = 0;
	return 0;
}

// path.Clean.
int kiln_clean(const char *in, char *out, size_t n) {
	size_t len = strlen(in);
	if (len == 0) return copy_n(".", 1, out, n);
	if (len + 1 > n) return -1; // Clean never lengthens a non-empty path
	int rooted = in[0] == '/';
	size_t r = 0, w = 0, dotdot = 0;
	if (rooted) {
		out[w++] = '/';
		r = 1;
		dotdot = 1;
	}
	while (r < len) {
		if (in[r] == '/') {
			r++;
		} else if (in[r] == '.' && (r + 1 == len || in[r + 1] == '/')) {
			r++;
		} else if (in[r] == '.' && in[r + 1] == '.' && (r + 2 == len || in[r + 2] == '/')) {
			r += 2;
			if (w > dotdot) {
				w--;
				while (w > dotdot && out[w] != '/') w--;
			} else if (!rooted) {
				if (w > 0) out[w++] = '/';
				out[w++] = '.';
				out[w++] = '.';
				dotdot = w;
			}
		} else {
			if ((rooted && w != 1) || (!rooted && w != 0)) out[w++] = '/';
			while (r < len && in[r] != '/') out[w++] = in[r++];
		}
	}
	if (w == 0) out[w++] = '.';
	out[w] = 0;
	return 0;
}

// path.Base: the last element, its bounds returned in *start and *blen.
// "" gives ".", all slashes "/".
static const char *base_of(const char *p, size_t *blen) {
	size_t len = strlen(p);
	if (len == 0) {
		*blen = 1;
		return ".";
	}
	while (len > 0 && p[len - 1] == '/') len--;
	if (len == 0) {
		*blen = 1;
		return "/";
	}
	const char *slash = memrchr(p, '/', len);
	const char *b = slash ? slash + 1 : p;
	*blen = len - (size_t)(b - p);
	return b;
}

// The stem of path.Base(p): without path.Ext.
static void stem_of(const char *p, const char **stem, size_t *slen) {
	size_t blen;
	const char *b = base_of(p, &blen);
	const char *dot = memrchr(b, '.', blen);
	*stem = b;
	*slen = dot ? (size_t)(dot - b) : blen;
}

// cmdline.trimVersion and KindOf.
int kiln_kind_known(const char *path) {
	size_t len;
	const char *b = base_of(path, &len);
	const char *d = memrchr(b, '-', len);
	size_t dash = d ? (size_t)(d - b) : len;
	if (dash < len && dash + 1 < len && b[dash + 1] >= '0' && b[dash + 1] <= '9') {
		int version = 1;
		for (size_t i = dash + 1; i < len; i++) {
			if ((b[i] < '0' || b[i] > '9') && b[i] != '.') version = 0;
		}
		if (version) len = dash;
	}
	static const char *const kinds[] = {"clang++", "clang", "g++", "c++", "gcc", "cc"};
	for (size_t k = 0; k < NELEM(kinds); k++) {
		size_t m = strlen(kinds[k]);
		if (len == m && memcmp(b, kinds[k], m) == 0) return 1;
		if (len > m && memcmp(b + len - m, kinds[k], m) == 0 && b[len - m - 1] == '-') return 1;
	}
	return 0;
}

// The components of path.Dir(p), or of p itself, as cmdline's conftest
// splits them.
static int any_component(const char *p, int (*match)(const char *, size_t)) {
	const char *s = p;
	for (;;) {
		const char *e = strchr(s, '/');
		size_t n = e ? (size_t)(e - s) : strlen(s);
		if (match(s, n)) return 1;
		if (!e) return 0;
		s = e + 1;
	}
}

static int is_cmtc(const char *c, size_t n) { return n >= 5 && memcmp(c, "cmTC_", 5) == 0 && has_suffix(c, n, ".dir"); }

static int is_meson(const char *c, size_t n) { return n == 13 && memcmp(c, "meson-private", 13) == 0; }

static int is_probe_stem(const char *stem, size_t n) {
	if ((n == 8 && memcmp(stem, "conftest", 8) == 0) || (n == 9 && memcmp(stem, "conftest2", 9) == 0)) return 1;
	if (n > 5 && memcmp(stem, "ztest", 5) == 0) {
		for (size_t i = 5; i < n; i++) {
			if (stem[i] < '0' || stem[i] > '9') return 0;
		}
		return 1;
	}
	return 0;
}

static int contains_n(const char *s, size_t n, const char *sub) {
	size_t m = strlen(sub);
	for (size_t i = 0; i + m <= n; i++) {
		if (memcmp(s + i, sub, m) == 0) return 1;
	}
	return 0;
}

// cmdline.conftest.
int kiln_conftest(const char *source, const char *output) {
	const char *paths[2] = {source, output};
	for (int i = 0; i < 2; i++) {
		const char *stem;
		size_t n;
		stem_of(paths[i], &stem, &n);
		if (is_probe_stem(stem, n)) return 1;
	}
	size_t blen;
	const char *b = base_of(source, &blen);
	if (blen >= 5 && memcmp(b, "CMake", 5) == 0 && (contains_n(b, blen, "CompilerId.") || contains_n(b, blen, "CompilerABI."))) return 1;
	// path.Dir(output): Clean of everything up to the last slash.
	char dir[PATH_MAX];
	const char *slash = strrchr(output, '/');
	char head[PATH_MAX];
	size_t hlen = slash ? (size_t)(slash - output) + 1 : 0;
	if (copy_n(output, hlen, head, sizeof head) < 0 || kiln_clean(head, dir, sizeof dir) < 0) return 0; // kiln_decide keeps tokens shorter
	if (any_component(dir, is_cmtc)) return 1;
	// A component "CMakeFiles" followed by "CMakeTmp" or "CMakeScratch"
	// that is not the last.
	const char *s = source;
	for (;;) {
		const char *e = strchr(s, '/');
		if (!e) break;
		size_t n = (size_t)(e - s);
		if (n == 10 && memcmp(s, "CMakeFiles", 10) == 0) {
			const char *t = e + 1, *te = strchr(t, '/');
			if (te) {
				size_t tn = (size_t)(te - t);
				if ((tn == 8 && memcmp(t, "CMakeTmp", 8) == 0) || (tn == 12 && memcmp(t, "CMakeScratch", 12) == 0)) return 1;
			}
		}
		s = e + 1;
	}
	for (int i = 0; i < 2; i++) {
		if (any_component(paths[i], is_meson)) return 1;
	}
	return 0;
}

static const struct kiln_opt *find_exact(const char *tok) {
	for (size_t i = 0; i < NELEM(kiln_exact); i++) {
		if (strcmp(tok, kiln_exact[i].name) == 0) return &kiln_exact[i];
	}
	return NULL;
}

// cmdline.lookupPrefix.
static const struct kiln_opt *find_prefix(const char *tok) {
	size_t len = strlen(tok);
	if (len < 2) return NULL;
	for (size_t i = 0; i < NELEM(kiln_prefix); i++) {
		const struct kiln_opt *o = &kiln_prefix[i];
		size_t m = strlen(o->name);
		if (len > m && memcmp(tok, o->name, m) == 0) return o;
		if (o->joined_only && len == m && memcmp(tok, o->name, m) == 0) return o;
	}
	return NULL;
}

// The first decisions of cmdline's parser.decide: those that depend only
// on which tokens are options, their arguments and the inputs.
const char *kiln_decide(const char *compiler, int argc, char *const *args) {
	if (!kiln_kind_known(compiler)) return NULL;
	for (int i = 0; i < argc; i++) {
		if (args[i][0] == '@') return NULL;                // response files: the Go side expands them
		if (strlen(args[i]) >= PATH_MAX) return NULL; // beyond the buffers below: the Go side decides
	}
	int query = 0, e = 0, m = 0, mm = 0, c = 0, s = 0, inputs = 0, has_output = 0;
	const char *input = "", *output = "";
	for (int i = 0; i < argc; i++) {
		const char *tok = args[i];
		if (tok[0] != '-' || strcmp(tok, "-") == 0) {
			if (inputs++ == 0) input = tok;
			continue;
		}
		const struct kiln_opt *o = find_exact(tok);
		if (o) {
			if (!o->separate) {
				query |= o->query;
				c |= strcmp(tok, "-c") == 0;
				s |= strcmp(tok, "-S") == 0;
				e |= strcmp(tok, "-E") == 0;
				m |= strcmp(tok, "-M") == 0;
				mm |= strcmp(tok, "-MM") == 0;
			} else if (i + 1 < argc) { // else a missing argument: not applied
				query |= o->query;
				i++;
				if (strcmp(tok, "-o") == 0) {
					output = args[i];
					has_output = 1;
				}
			}
			continue;
		}
		o = find_prefix(tok);
		if (o) {
			query |= o->query;
			if (strcmp(o->name, "-o") == 0) {
				output = tok + 2;
				has_output = 1;
			}
		}
		// Anything else is one token: an option of the -f, -m, -W, -g, -O
		// families or an unknown one.
	}
	if (query) return "query";
	if (e || m || mm) return "preprocess_only";
	if (!c && !s) return "link";
	const char *source = inputs == 1 ? input : "";
	char derived[PATH_MAX];
	if (!has_output && source[0] != 0) {
		const char *stem;
		size_t n;
		stem_of(source, &stem, &n);
		if (copy_n(stem, n, derived, sizeof derived - 2) < 0) return NULL;
		strcat(derived, s ? ".s" : ".o");
		output = derived;
	}
	if (kiln_conftest(source, output)) return "conftest";
	return NULL;
}

// decide.ResolveCompiler (a name with a slash is made absolute against
// cwd, as filepath.Abs does).
int kiln_resolve(const char *name, const char *path_env, const char *self_real, const char *cwd, char *out, size_t n) {
	char buf[PATH_MAX];
	if (strchr(name, '/')) {
		if (name[0] == '/') return kiln_clean(name, out, n);
		if (!cwd || snprintf(buf, sizeof buf, "%s/%s", cwd, name) >= (int)sizeof buf) return -1;
		return kiln_clean(buf, out, n);
	}
	if (!path_env) path_env = "";
	const char *d = path_env;
	for (;;) {
		const char *end = strchr(d, ':');
		size_t dl = end ? (size_t)(end - d) : strlen(d);
		if (dl > 0 && d[0] == '/' && dl + strlen(name) + 2 <= sizeof buf) {
			memcpy(buf, d, dl);
			buf[dl] = '/';
			strcpy(buf + dl + 1, name);
			char cand[PATH_MAX];
			struct stat st;
			if (kiln_clean(buf, cand, sizeof cand) == 0 && stat(cand, &st) == 0 && !S_ISDIR(st.st_mode) && (st.st_mode & 0111) != 0) {
				char real[PATH_MAX];
				if (!(self_real && realpath(cand, real) && strcmp(real, self_real) == 0)) {
					return copy_n(cand, strlen(cand), out, n);
				}
			}
		}
		if (!end) return -1;
		d = end + 1;
	}
}

// config.CacheDir, where os.UserCacheDir succeeds.
int kiln_cache_dir(const char *xdg, const char *home, char *out, size_t n) {
	char buf[PATH_MAX];
	int w;
	if (xdg && xdg[0]) {
		if (xdg[0] != '/') return -1;
		w = snprintf(buf, sizeof buf, "%s/kiln/cc", xdg);
	} else if (home && home[0]) {
		w = snprintf(buf, sizeof buf, "%s/.cache/kiln/cc", home);
	} else {
		return -1;
	}
	if (w < 0 || w >= (int)sizeof buf) return -1;
	return kiln_clean(buf, out, n);
}

// The line stats.Store folds in for each local compile the fast path ran.
int kiln_journal_line(const char *reason, long long nanos, char *out, size_t n) {
	int w = snprintf(out, n, "%s %lld\n", reason, nanos);
	return w < 0 || w >= (int)n ? -1 : w;
}

// mkdir_all creates dir (absolute, clean) and its parents, 0755 like the
// stats store's os.MkdirAll.
static int mkdir_all(const char *dir) {
	char p[PATH_MAX];
	if (copy_n(dir, strlen(dir), p, sizeof p) < 0) return -1;
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

// record appends the journal line under a shared lock (stats.Store folds
// the journal under an exclusive one), creating the cache directory on
// first use. -1: nothing written, or not all of it.
static int record(const char *cache, const char *reason, long long nanos) {
	char path[PATH_MAX], line[128];
	int len = kiln_journal_line(reason, nanos, line, sizeof line);
	if (len < 0 || snprintf(path, sizeof path, "%s/stats.journal", cache) >= (int)sizeof path) return -1;
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0 && errno == ENOENT && mkdir_all(cache) == 0) {
		fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	}
	if (fd < 0) return -1;
	int err;
	while ((err = flock(fd, LOCK_SH)) < 0 && errno == EINTR) {
	}
	ssize_t w = err == 0 ? write(fd, line, (size_t)len) : -1;
	close(fd);
	return w == len ? 0 : -1;
}

// os.Getwd: $PWD when it is absolute and names the working directory,
// else getcwd.
static const char *working_dir(char *buf, size_t n) {
	const char *pwd = getenv("PWD");
	struct stat dot, st;
	if (pwd && pwd[0] == '/' && stat(".", &dot) == 0 && stat(pwd, &st) == 0 && dot.st_dev == st.st_dev && dot.st_ino == st.st_ino) {
		return copy_n(pwd, strlen(pwd), buf, n) == 0 ? buf : NULL;
	}
	return getcwd(buf, n);
}

static long long since(const struct timespec *t0) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)(t.tv_sec - t0->tv_sec) * 1000000000LL + (t.tv_nsec - t0->tv_nsec);
}

// kiln_socket_path writes ccd.SocketPath(cache, core) for a kiln-core of
// the given size and modification time: an FNV-1a hash of the three.
int kiln_socket_path(const char *cache, const char *core, long long size, long long mtime_ns, char *out, size_t n) {
	char key[PATH_MAX + 64];
	int klen = snprintf(key, sizeof key, "%s%c%lld%c%lld", core, 0, size, 0, mtime_ns);
	if (klen < 0 || klen >= (int)sizeof key) return -1;
	uint64_t h = 14695981039346656037ULL;
	for (int i = 0; i < klen; i++) {
		h ^= (unsigned char)key[i];
		h *= 1099511628211ULL;
	}
	int w = snprintf(out, n, "%s/daemon-%llx.sock", cache, (unsigned long long)h);
	if (w < 0 || w >= (int)n || w >= (int)sizeof(((struct sockaddr_un *)0)->sun_path)) return -1;
	return 0;
}

// A growable byte buffer for the daemon protocol (wrapper/ccd).
struct buf {
	char *p;
	size_t n, cap;
};

static int put(struct buf *b, const void *data, size_t n) {
	if (b->n + n > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 4096;
		while (cap < b->n + n) cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) return -1;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->n, data, n);
	b->n += n;
	return 0;
}

static int put_u32(struct buf *b, uint32_t v) {
	unsigned char x[4] = {v >> 24, v >> 16, v >> 8, v};
	return put(b, x, 4);
}

static int put_str(struct buf *b, const char *s) {
	size_t n = strlen(s);
	return n > 0xffffffffu || put_u32(b, (uint32_t)n) < 0 ? -1 : put(b, s, n);
}

static int put_strs(struct buf *b, int count, char *const *l) {
	if (put_u32(b, (uint32_t)count) < 0) return -1;
	for (int i = 0; i < count; i++) {
		if (put_str(b, l[i]) < 0) return -1;
	}
	return 0;
}

// kiln_encode_request writes a ccd request frame (length and payload) to
// *out (malloc'd); its length, or -1.
long kiln_encode_request(const char *dir, const char *compiler, unsigned umask_bits, int argc, char *const *args, int envc, char *const *env, char **out) {
	struct buf b = {0};
	int bad = put_u32(&b, 0) < 0 || put_u32(&b, 2) < 0 || put_str(&b, dir) < 0 || put_str(&b, compiler) < 0 || put_u32(&b, umask_bits) < 0 ||
		  put_strs(&b, argc, args) < 0 || put_strs(&b, envc, env) < 0;
	if (bad || b.n - 4 > KILN_MAX_MESSAGE) {
		free(b.p);
		return -1;
	}
	uint32_t len = (uint32_t)(b.n - 4);
	unsigned char *p = (unsigned char *)b.p;
	p[0] = len >> 24, p[1] = len >> 16, p[2] = len >> 8, p[3] = len;
	*out = b.p;
	return (long)b.n;
}

static uint32_t get_u32(const unsigned char *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

// kiln_decode_answer reads one ccd answer payload: an accept (returns 1,
// *wait_ms set) or a response (returns 2, the fields pointing into p), or
// -1 when it is malformed.
int kiln_decode_answer(const unsigned char *p, size_t n, unsigned *wait_ms, struct kiln_response *r) {
	if (n < 1) return -1;
	if (p[0] == 'A') {
		if (n != 5) return -1;
		*wait_ms = get_u32(p + 1);
		return 1;
	}
	if (p[0] != 'R' || n < 6) return -1;
	r->exit = (int32_t)get_u32(p + 1);
	if (p[5] > 1) return -1;
	r->local = p[5];
	size_t off = 6;
	const unsigned char *field[3];
	size_t len[3];
	for (int i = 0; i < 3; i++) {
		if (n - off < 4) return -1;
		len[i] = get_u32(p + off);
		off += 4;
		if (n - off < len[i]) return -1;
		field[i] = p + off;
		off += len[i];
	}
	if (off != n) return -1;
	r->out = (const char *)field[0], r->out_len = len[0];
	r->err = (const char *)field[1], r->err_len = len[1];
	r->error = (const char *)field[2], r->error_len = len[2];
	return 2;
}

static long long now_ms(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

// read_full reads n bytes from fd before deadline (monotonic ms).
static int read_full(int fd, unsigned char *p, size_t n, long long deadline) {
	while (n > 0) {
		long long left = deadline - now_ms();
		if (left <= 0) return -1;
		struct pollfd pfd = {fd, POLLIN, 0};
		int r = poll(&pfd, 1, left > 1000000000 ? 1000000000 : (int)left);
		if (r < 0 && errno == EINTR) continue;
		if (r <= 0) return -1;
		ssize_t got = read(fd, p, n);
		if (got < 0 && errno == EINTR) continue;
		if (got <= 0) return -1;
		p += got;
		n -= (size_t)got;
	}
	return 0;
}

// read_frame returns one frame's payload (malloc'd), or NULL.
static unsigned char *read_frame(int fd, size_t *n, long long deadline) {
	unsigned char hdr[4];
	if (read_full(fd, hdr, 4, deadline) < 0) return NULL;
	uint32_t len = get_u32(hdr);
	if (len > KILN_MAX_MESSAGE) return NULL;
	unsigned char *p = malloc(len ? len : 1);
	if (p && read_full(fd, p, len, deadline) < 0) {
		free(p);
		return NULL;
	}
	*n = len;
	return p;
}

static int write_all(int fd, const char *p, size_t n) {
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR) continue;
		if (w <= 0) return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

// out_all writes to the terminal or pipe of fd, as the Go front would.
static void out_all(int fd, const char *p, size_t n) {
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR) continue;
		if (w <= 0) return;
		p += w;
		n -= (size_t)w;
	}
}

// exec_with replaces the process with prog, its arguments lead (nlead of
// them) then args; on failure it says why and exits with code.
static void exec_with(const char *prog, char *const *lead, int nlead, int nargs, char **args, char **envp, int code) {
	char **argv = malloc(sizeof(char *) * (size_t)(nlead + nargs + 1));
	if (argv) {
		memcpy(argv, lead, sizeof(char *) * (size_t)nlead);
		memcpy(argv + nlead, args, sizeof(char *) * (size_t)nargs);
		argv[nlead + nargs] = NULL;
		execve(prog, argv, envp);
	}
	fprintf(stderr, "kiln: exec %s: %s\n", prog, strerror(errno));
	_exit(code);
}

// exec_compiler replaces the process with the compiler at path.
static void exec_compiler(const char *path, int nargs, char **args, char **envp) {
	char *const lead[] = {(char *)path};
	exec_with(path, lead, 1, nargs, args, envp, 127);
}

// exec_core hands the compile to `kiln-core cc PATH ARGS`, as the Go front
// does when the daemon fails it.
static void exec_core(const char *core, const char *path, int nargs, char **args, char **envp) {
	char *const lead[] = {(char *)core, "cc", (char *)path};
	exec_with(core, lead, 3, nargs, args, envp, 1);
}

// via_daemon sends a compile the fast path cannot decide to the user's
// kiln cc daemon (wrapper/ccd), as the Go front would, and never returns
// once the daemon has taken it. It returns, for the Go front to do the
// whole job, when there is no daemon listening (the Go front starts one),
// when the daemon refuses the request (a bad configuration, the daemon
// turned off: the Go front reports it), or on any problem before the
// request is sent.
static void via_daemon(const char *self, const char *compiler, int nargs, char **args, char **envp) {
	char cache[PATH_MAX], core[PATH_MAX], sock[PATH_MAX], cwd[PATH_MAX];
	if (kiln_cache_dir(getenv("XDG_CACHE_HOME"), getenv("HOME"), cache, sizeof cache) < 0) return;
	const char *slash = strrchr(self, '/');
	struct stat st;
	if (!slash || snprintf(core, sizeof core, "%.*s/kiln-core", (int)(slash - self), self) >= (int)sizeof core) return;
	if (stat(core, &st) < 0 || S_ISDIR(st.st_mode)) return;
	if (kiln_socket_path(cache, core, (long long)st.st_size, (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec, sock, sizeof sock) < 0) return;
	if (!working_dir(cwd, sizeof cwd)) return;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) return;
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	strcpy(addr.sun_path, sock);
	int r;
	while ((r = connect(fd, (struct sockaddr *)&addr, sizeof addr)) < 0 && errno == EINTR) {
	}
	if (r < 0) {
		close(fd);
		return;
	}
	mode_t mask = umask(0);
	umask(mask);
	int envc = 0;
	while (envp[envc]) envc++;
	char *req;
	long len = kiln_encode_request(cwd, compiler, (unsigned)mask, nargs, args, envc, envp, &req);
	if (len < 0) {
		close(fd);
		return;
	}
	int sent = write_all(fd, req, (size_t)len);
	free(req);
	if (sent < 0) {
		close(fd);
		return;
	}
	// Sent: from here on the daemon may be compiling, so a failure goes
	// to kiln-core cc rather than back to the Go front, which would ask
	// the daemon again.
	unsigned wait_ms = 0;
	struct kiln_response resp;
	size_t n;
	unsigned char *msg = read_frame(fd, &n, now_ms() + KILN_ACCEPT_TIMEOUT_MS);
	int kind = msg ? kiln_decode_answer(msg, n, &wait_ms, &resp) : -1;
	if (kind == 1) {
		free(msg);
		msg = read_frame(fd, &n, now_ms() + wait_ms);
		kind = msg ? kiln_decode_answer(msg, n, &wait_ms, &resp) : -1;
	}
	close(fd);
	if (kind != 2) exec_core(core, compiler, nargs, args, envp);
	if (resp.error_len > 0) {
		free(msg);
		return;
	}
	out_all(1, resp.out, resp.out_len);
	out_all(2, resp.err, resp.err_len);
	if (resp.local) exec_compiler(compiler, nargs, args, envp);
	_exit(resp.exit & 0xff);
}

// kiln_fastpath runs before the Go runtime starts (glibc calls
// constructors with main's arguments). A compiler call it can decide
// locally is counted and replaced by the compiler; for anything else it
// returns and the Go program runs as if it were not there.
__attribute__((constructor)) static void kiln_fastpath(int argc, char **argv, char **envp) {
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (argc < 1 || !argv || !argv[0]) return;
	const char *env = getenv("KILN_FASTPATH");
	if (env && strcmp(env, "0") == 0) return;
	const char *name;
	char **args;
	int nargs;
	size_t blen;
	const char *b = base_of(argv[0], &blen);
	char base[NAME_MAX + 1];
	if (copy_n(b, blen, base, sizeof base) < 0) return;
	if (strcmp(base, "kiln") != 0 && kiln_kind_known(base)) {
		name = base;
		args = argv + 1;
		nargs = argc - 1;
	} else if (argc >= 3 && strcmp(argv[1], "cc") == 0 && argv[2][0] != '-') {
		name = argv[2];
		args = argv + 3;
		nargs = argc - 3;
	} else {
		return;
	}
	if (!kiln_kind_known(name)) return;
	const char *reason = kiln_decide(name, nargs, args);
	char self[PATH_MAX], cwd[PATH_MAX], path[PATH_MAX], cache[PATH_MAX];
	if (!realpath("/proc/self/exe", self)) return;
	const char *dir = NULL;
	if (strchr(name, '/') && name[0] != '/') {
		if (!(dir = working_dir(cwd, sizeof cwd))) return;
	}
	if (kiln_resolve(name, getenv("PATH"), self, dir, path, sizeof path) < 0) return;
	if (!reason) {
		via_daemon(self, path, nargs, args, envp);
		return;
	}
	if (kiln_cache_dir(getenv("XDG_CACHE_HOME"), getenv("HOME"), cache, sizeof cache) < 0) return;
	if (record(cache, reason, since(&t0)) < 0) return; // the Go side creates the directory, or logs why it cannot
	exec_compiler(path, nargs, args, envp);
}
