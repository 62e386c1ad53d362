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
#include <sys/file.h>
#include <sys/stat.h>
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
	size_t i = len;
	while (i > 0 && p[i - 1] != '/') i--;
	*blen = len - i;
	return p + i;
}

// The stem of path.Base(p): without path.Ext.
static void stem_of(const char *p, const char **stem, size_t *slen) {
	size_t blen;
	const char *b = base_of(p, &blen);
	size_t e = blen;
	for (size_t i = blen; i > 0; i--) {
		if (b[i - 1] == '.') {
			e = i - 1;
			break;
		}
	}
	*stem = b;
	*slen = e;
}

// cmdline.trimVersion and KindOf.
int kiln_kind_known(const char *path) {
	size_t len;
	const char *b = base_of(path, &len);
	size_t dash = len;
	for (size_t i = len; i > 0; i--) {
		if (b[i - 1] == '-') {
			dash = i - 1;
			break;
		}
	}
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
	if (copy_n(output, hlen, head, sizeof head) < 0 || kiln_clean(head, dir, sizeof dir) < 0) return 1; // absurdly long: local is safe
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
		if (args[i][0] == '@') return NULL; // response files: the Go side expands them
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
	const char *reason = kiln_decide(name, nargs, args);
	if (!reason) return;
	char self[PATH_MAX], cwd[PATH_MAX], path[PATH_MAX], cache[PATH_MAX];
	if (!realpath("/proc/self/exe", self)) return;
	const char *dir = NULL;
	if (strchr(name, '/') && name[0] != '/') {
		if (!(dir = working_dir(cwd, sizeof cwd))) return;
	}
	if (kiln_resolve(name, getenv("PATH"), self, dir, path, sizeof path) < 0) return;
	if (kiln_cache_dir(getenv("XDG_CACHE_HOME"), getenv("HOME"), cache, sizeof cache) < 0) return;
	char **cargv = malloc(sizeof(char *) * (size_t)(nargs + 2));
	if (!cargv) return;
	cargv[0] = path;
	memcpy(cargv + 1, args, sizeof(char *) * (size_t)nargs);
	cargv[nargs + 1] = NULL;
	if (record(cache, reason, since(&t0)) < 0) {
		free(cargv);
		return; // the Go side creates the directory, or logs why it cannot
	}
	execve(path, cargv, envp);
	fprintf(stderr, "kiln: exec %s: %s\n", path, strerror(errno));
	_exit(127);
}
