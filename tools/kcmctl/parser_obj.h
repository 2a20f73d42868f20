/* SPDX-License-Identifier: GPL-2.0 */
/*
 * BPF parser objects and their configuration keys.
 *
 * The convention: every configurable key K of a parser object is an
 * integer global `const volatile <int type> kcmux_cfg_K` (so it lands in
 * .rodata); the object's BTF tells the keys, their types and, with the
 * .rodata contents, their defaults.  A value is set by rewriting .rodata
 * before the object is loaded, after which the verifier treats it as a
 * constant.  A loaded parser's values are read back from its .rodata map
 * through the map's BTF, so any parser that follows the convention is
 * understood without kcmctl knowing it.
 *
 * Functions here that take a struct kcmctl report their errors (kc_*).
 */
#ifndef KCMCTL_PARSER_OBJ_H
#define KCMCTL_PARSER_OBJ_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "kcmctl.h"

#define PARSER_KEY_PREFIX	"kcmux_cfg_"
#define PARSER_MAX_KEYS		32
#define PARSER_MAX_KV		PARSER_MAX_KEYS
#define PARSER_SUFFIX		".bpf.o"

struct btf;
struct bpf_object;
struct bpf_program;
struct bpf_map;

struct parser_key {
	char name[64];		/* K of kcmux_cfg_K */
	uint32_t offset;	/* in .rodata */
	uint32_t size;		/* 1, 2, 4 or 8 bytes */
	bool is_signed;
	uint64_t value;		/* as stored: sign-extended if signed */
	bool set;		/* given on the command line */
};

struct parser_keys {
	struct parser_key key[PARSER_MAX_KEYS];
	unsigned int n;
};

/* An object file opened (not yet loaded) with its program chosen. */
struct parser_obj {
	char path[PATH_MAX];
	char label[64];			/* for messages: the name or file */
	struct bpf_object *obj;
	struct bpf_program *prog;
	struct bpf_map *rodata;		/* NULL: the object has no keys */
	void *rodata_buf;		/* what .rodata will be loaded with */
	size_t rodata_size;
	struct parser_keys keys;
	char why[320];			/* what parser_obj_open() failed at */
};

/* How a command names its parser. */
enum parser_spec_kind {
	PARSER_SPEC_NAME,	/* NAME [KEY VALUE]... from the parser dir */
	PARSER_SPEC_OBJ,	/* obj FILE [prog NAME] [KEY VALUE]... */
	PARSER_SPEC_PINNED,	/* pinned PATH */
};

struct parser_spec {
	enum parser_spec_kind kind;
	const char *arg;	/* NAME, FILE or PATH */
	const char *prog;	/* obj: the program, NULL for the first */
	const char *kv[2 * PARSER_MAX_KV];
	unsigned int nkv;	/* words in kv[] */
};

/* Quiet libbpf unless debug (its messages would break the one-line rule). */
void parser_lib_init(bool debug);

/*
 * The parser spec at the start of a: stops at the end, or at the word
 * stop (e.g. "pin") if not NULL.  KC_USAGE if malformed.
 */
int parser_spec_parse(struct kc_args *a, const char *stop,
		      struct parser_spec *spec);

/* DIR/NAME.bpf.o of the parser dir, if it exists. */
int parser_path(const struct kcmctl *k, const char *name, char *path,
		size_t size);

/*
 * 0, or -errno with po->why saying what failed (nothing printed: a list
 * shows unusable objects among the others).
 */
int parser_obj_open(struct parser_obj *po, const char *path,
		    const char *label, const char *prog_name);
int parser_obj_set(struct parser_obj *po, const char *key, const char *value);
int parser_obj_load(const struct kcmctl *k, struct parser_obj *po);
int parser_obj_prog_fd(const struct parser_obj *po);
void parser_obj_close(struct parser_obj *po);

/*
 * Opens and configures the parser of spec, without side effects: a bad
 * key or value is reported before anything happens.  Then loads it:
 * *prog_fd is a socket filter program, owned by po, or by the caller for
 * a pinned one (po->obj is NULL then).  Both leave po closed on error.
 */
int parser_spec_prepare(const struct kcmctl *k, const struct parser_spec *spec,
			struct parser_obj *po);
int parser_spec_load(const struct kcmctl *k, const struct parser_spec *spec,
		     struct parser_obj *po, int *prog_fd);

/* The kcmux_cfg_* variables of a .rodata DATASEC, with values from data. */
int parser_keys_from_btf(const struct btf *btf, int datasec_id,
			 const void *data, size_t size,
			 struct parser_keys *keys);

/* kc_err() for an error libbpf returned (it has codes of its own). */
int parser_bpf_err(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Is fd a BPF program of type socket filter?  Reported if not. */
int parser_check_prog_fd(int fd, const char *path);

/* "u32", "s64" ... */
const char *parser_key_type(const struct parser_key *key);
/* The key's value in JSON ("key": n) and text (" key n"). */
void parser_key_print(struct printer *p, const struct parser_key *key);

#endif /* KCMCTL_PARSER_OBJ_H */
