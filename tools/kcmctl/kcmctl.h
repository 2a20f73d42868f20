/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kcmctl: what every part of the tool shares: the option struct, the
 * command tables, error reporting and argument parsing.
 *
 * Error convention: a function that can fail either returns -errno and
 * prints nothing (the low-level helpers: netlink, parsing of numbers,
 * /proc readers), or prints exactly one line on stderr and returns
 * KC_FAIL or KC_USAGE (everything with "kc_" error calls in it).  The
 * command that gets KC_* back just returns it, so an error is always
 * reported once, on one line, and decides the exit status.
 */
#ifndef KCMCTL_H
#define KCMCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "json_print.h"

#define KC_FAIL		(-1)	/* reported; exit status 1 */
#define KC_USAGE	(-2)	/* reported; exit status 2: bad command line */

#define KC_ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

#ifndef KCMUX_PARSER_DIR
#define KCMUX_PARSER_DIR	"/usr/local/lib/kcmux/bpf"
#endif
#ifndef KCMCTL_VERSION
#define KCMCTL_VERSION		"unknown"
#endif

/* The global options, and the printer they select. */
struct kcmctl {
	struct printer pr;
	bool json;
	bool pretty;
	bool debug;		/* libbpf's messages, the verifier log */
	const char *netns;	/* -n: name in /run/netns, or a path */
	const char *parser_dir;	/* -P, else $KCMUX_PARSER_DIR, else built in */
};

/* What is left of the command line. */
struct kc_args {
	int argc;
	char **argv;
};

struct kc_cmd {
	const char *name;
	int (*run)(struct kcmctl *k, struct kc_args *a);
};

/* --- errors (util.c) ------------------------------------------------- */

/* "kcmctl: <what>: <strerror> (<ERRNO>)" on stderr; returns KC_FAIL. */
int kc_err(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same with EINVAL, for a bad command line; returns KC_USAGE. */
int kc_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A bad command line with another errno (ERANGE); returns KC_USAGE. */
int kc_usage_err(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* "EPERM"; never NULL. */
const char *kc_errno_name(int err);

/* --- commands and keywords (util.c) ---------------------------------- */

/*
 * Index in names[] of word: an exact match, else the only name word is
 * a prefix of.  Unknown or ambiguous: reports (what = "command",
 * "keyword" ...) and returns KC_USAGE.
 */
int kc_lookup(const char *word, const char *const *names, size_t n,
	      const char *what);
/* Runs the command of cmds named (or prefixed) by the next argument. */
int kc_dispatch(struct kcmctl *k, const struct kc_cmd *cmds, size_t n,
		const char *what, struct kc_args *a);
/* Is the next argument "help" (or a prefix of it, or -h/--help)? */
bool kc_is_help(const char *word);

/* --- arguments (util.c) ---------------------------------------------- */

static inline bool args_more(const struct kc_args *a)
{
	return a->argc > 0;
}

static inline const char *args_peek(const struct kc_args *a)
{
	return a->argc > 0 ? a->argv[0] : NULL;
}

static inline const char *args_next(struct kc_args *a)
{
	if (a->argc <= 0)
		return NULL;
	a->argc--;
	return *a->argv++;
}

/* The value after keyword: reports a missing one (KC_USAGE). */
int args_value(struct kc_args *a, const char *keyword, const char **val);
/* Reports any argument left over (KC_USAGE), else 0. */
int args_end(const struct kc_args *a);

/*
 * Strict integers: decimal or 0x-hex, no blanks, no sign for unsigned.
 * 0, -EINVAL (not a number) or -ERANGE.  Nothing printed.
 */
int parse_u64(const char *s, uint64_t max, uint64_t *out);
int parse_s64(const char *s, int64_t min, int64_t max, int64_t *out);

/* The same, reporting "invalid <what> '<s>'" (KC_USAGE). */
int arg_u64(const char *what, const char *s, uint64_t max, uint64_t *out);
int arg_s64(const char *what, const char *s, int64_t min, int64_t max,
	    int64_t *out);
/* A file descriptor number or a process id (KC_USAGE if invalid). */
int arg_fd(const char *what, const char *s, int *fd);
int arg_pid(const char *s, pid_t *pid);

/* --- command entry points -------------------------------------------- */

int cmd_parser(struct kcmctl *k, struct kc_args *a);
int cmd_attach(struct kcmctl *k, struct kc_args *a);
int cmd_unattach(struct kcmctl *k, struct kc_args *a);
int cmd_show(struct kcmctl *k, struct kc_args *a);
int cmd_stats(struct kcmctl *k, struct kc_args *a);
int cmd_monitor(struct kcmctl *k, struct kc_args *a);

#endif /* KCMCTL_H */
