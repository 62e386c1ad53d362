// The kiln command's C fast path: see doc.go.
#ifndef KILN_FASTPATH_H
#define KILN_FASTPATH_H

#include <stddef.h>

// kiln_decide returns the reason a compiler call runs locally, when it is
// one the fast path decides (query, preprocess_only, link, conftest), or
// NULL: the Go side decides. compiler is the name or path the compiler was
// called by; args exclude it.
const char *kiln_decide(const char *compiler, int argc, char *const *args);

// kiln_kind_known reports whether the compiler called path is one kiln
// understands (cmdline.KindOf(path) != KindUnknown).
int kiln_kind_known(const char *path);

// kiln_clean writes path.Clean(in) to out (n bytes); -1 if it does not fit.
int kiln_clean(const char *in, char *out, size_t n);

// kiln_conftest returns 1 when source or output names a configure-time
// probe (cmdline's conftest).
int kiln_conftest(const char *source, const char *output);

// kiln_resolve writes the compiler to run for name to out, as
// decide.ResolveCompiler does (self_real: kiln's own executable, links
// resolved, or NULL); cwd is used for relative names. -1: not found or too
// long.
int kiln_resolve(const char *name, const char *path_env, const char *self_real, const char *cwd, char *out, size_t n);

// kiln_cache_dir writes config.CacheDir() for the given XDG_CACHE_HOME and
// HOME (NULL when unset) to out; -1 where Go would fall back to the
// temporary directory, or when it does not fit.
int kiln_cache_dir(const char *xdg, const char *home, char *out, size_t n);

// kiln_journal_line formats one stats journal record.
int kiln_journal_line(const char *reason, long long nanos, char *out, size_t n);

// The daemon protocol (wrapper/ccd): its limits, and a client's encoding
// and decoding.
#define KILN_MAX_MESSAGE (64u << 20)
#define KILN_ACCEPT_TIMEOUT_MS 10000

// kiln_socket_path writes ccd.SocketPath(cache, core) for a kiln-core of
// the given size and modification time to out.
int kiln_socket_path(const char *cache, const char *core, long long size, long long mtime_ns, char *out, size_t n);

// kiln_encode_request writes a request frame (length and payload) to *out
// (malloc'd) and returns its length, or -1.
long kiln_encode_request(const char *dir, const char *compiler, unsigned umask_bits, int argc, char *const *args, int envc, char *const *env,
			 char **out);

// A daemon's response; the strings point into the decoded message.
struct kiln_response {
	int exit, local;
	const char *out, *err, *error;
	size_t out_len, err_len, error_len;
};

// kiln_decode_answer decodes one answer payload: 1 for an accept (*wait_ms
// set), 2 for a response (*r set), -1 for anything malformed.
int kiln_decode_answer(const unsigned char *p, size_t n, unsigned *wait_ms, struct kiln_response *r);

#endif
