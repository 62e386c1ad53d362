// The sandbox init's protocol, shared by init.c and the Go glue (cinit.go).
// spec.go is the Go side; a test checks that the constants agree.
#ifndef KILN_SANDBOX_INIT_H
#define KILN_SANDBOX_INIT_H

#include <stddef.h>
#include <stdint.h>

#define KILN_INIT_ARG0 "kiln-sandbox-init"
#define KILN_INIT_ENV "KILN_NSENTER"
#define KILN_DEFAULT_PATH "/bin:/usr/bin"

#define KILN_SPEC_MAGIC 0x3149534bu   /* "KSI1" */
#define KILN_REPORT_MAGIC 0x3152534bu /* "KSR1" */
#define KILN_SPEC_MAX (64u << 20)

#define KILN_SPEC_PROBE 1u
#define KILN_SPEC_HERMETIC 2u
#define KILN_SPEC_NETWORK 4u
#define KILN_SPEC_SETIDS 8u
#define KILN_SPEC_KNOWN 15u

#define KILN_LIMITS 4 /* processes, open files, file size, memory */

#define KILN_CODE_OK 0
#define KILN_CODE_INVALID_ARGUMENT 3
#define KILN_CODE_INTERNAL 13

struct kiln_spec {
	uint32_t flags, uid, gid, nargs;
	int64_t limits[KILN_LIMITS];
	char *dir, *build_dir;
	char **args, **env, **covers; /* NULL-terminated */
};

struct kiln_report {
	uint32_t code;
	const char *message;
	int32_t exit_code;
	uint32_t signal;
	int64_t user_ns, system_ns, max_rss_bytes;
};

/* kiln_parse_spec parses a spec; -1 if it is malformed. */
int kiln_parse_spec(const unsigned char *data, size_t n, struct kiln_spec *s);
void kiln_free_spec(struct kiln_spec *s);
/* kiln_quote writes str into out (n bytes) as Go's %q would (see init.c for
   where it can differ), cut short if out is too small. */
const char *kiln_quote(const char *str, char *out, size_t n);
/* kiln_encode_report encodes r into buf; 0 if it does not fit. */
size_t kiln_encode_report(const struct kiln_report *r, unsigned char *buf, size_t n);

#endif
