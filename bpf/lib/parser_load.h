/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Loading a kcmux parser object with libbpf, configured through its
 * kcmux_cfg_<key> read-only globals.  Header-only: used by the host unit
 * tests (bpf/tests) and the VM selftests (selftests/kcm_parsers.c).
 *
 *	struct kcmux_parser p;
 *
 *	kcmux_parser_open(&p, "/usr/local/lib/kcmux/bpf/lenprefix.bpf.o");
 *	kcmux_parser_set(&p, "width", 2);
 *	fd = kcmux_parser_load(&p);	// a BPF_PROG_TYPE_SOCKET_FILTER fd
 *	...attach fd...
 *	kcmux_parser_close(&p);		// the kernel keeps what is attached
 *
 * The values live in the object's .rodata map: we edit a copy of its
 * initial value and hand it back to libbpf just before loading.  BTF
 * tells where each variable is and what integer type it has.
 */
#ifndef KCMUX_PARSER_LOAD_H
#define KCMUX_PARSER_LOAD_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#define KCMUX_CFG_PREFIX	"kcmux_cfg_"

struct kcmux_parser {
	struct bpf_object *obj;
	struct bpf_program *prog;
	const struct btf *btf;
	const struct btf_type *datasec;	/* .rodata, or NULL: no keys */
	struct bpf_map *rodata_map;
	uint8_t *rodata;		/* a copy of its initial value */
	size_t rodata_size;
};

/* A configuration variable of the object. */
struct kcmux_parser_key {
	const char *name;	/* without the prefix */
	uint32_t offset;	/* in .rodata */
	uint32_t size;		/* 4 or 8 */
	bool is_signed;
};

/* The .rodata map: libbpf names it after the object, "<obj>.rodata". */
static inline struct bpf_map *kcmux_parser_rodata_map(struct bpf_object *obj)
{
	struct bpf_map *map;
	size_t len;

	bpf_object__for_each_map(map, obj) {
		const char *name = bpf_map__name(map);

		len = strlen(name);
		if (bpf_map__is_internal(map) && len >= 7 &&
		    !strcmp(name + len - 7, ".rodata"))
			return map;
	}
	return NULL;
}

/* Opens the object at path: 0 or -errno.  Nothing is loaded yet. */
static inline int kcmux_parser_open(struct kcmux_parser *p, const char *path)
{
	struct bpf_program *prog;
	const void *init;
	int nprogs = 0, id;

	memset(p, 0, sizeof(*p));
	/* libbpf >= 1.0: NULL and errno on failure. */
	p->obj = bpf_object__open_file(path, NULL);
	if (!p->obj)
		return errno ? -errno : -EINVAL;
	bpf_object__for_each_program(prog, p->obj) {
		p->prog = prog;
		nprogs++;
	}
	/* One parser per object, so that "the object's program" is one. */
	if (nprogs != 1 ||
	    bpf_program__type(p->prog) != BPF_PROG_TYPE_SOCKET_FILTER)
		goto inval;

	p->btf = bpf_object__btf(p->obj);
	p->rodata_map = kcmux_parser_rodata_map(p->obj);
	if (!p->rodata_map || !p->btf)
		return 0;
	init = bpf_map__initial_value(p->rodata_map, &p->rodata_size);
	id = btf__find_by_name_kind(p->btf, ".rodata", BTF_KIND_DATASEC);
	if (!init || id < 0)
		goto inval;
	p->rodata = malloc(p->rodata_size);
	if (!p->rodata) {
		bpf_object__close(p->obj);
		p->obj = NULL;
		return -ENOMEM;
	}
	memcpy(p->rodata, init, p->rodata_size);
	p->datasec = btf__type_by_id(p->btf, id);
	return 0;
inval:
	bpf_object__close(p->obj);
	p->obj = NULL;
	return -EINVAL;
}

/*
 * The idx-th configuration key (from 0): 0, -ENOENT past the last one,
 * -EINVAL for a kcmux_cfg_ variable that is not a 32- or 64-bit integer.
 */
static inline int kcmux_parser_key_at(const struct kcmux_parser *p, int idx,
				      struct kcmux_parser_key *key)
{
	const struct btf_var_secinfo *vsi;
	const struct btf_type *var, *type;
	const char *name;
	int i, seen = 0;

	if (!p->datasec)
		return -ENOENT;
	vsi = btf_var_secinfos(p->datasec);
	for (i = 0; i < btf_vlen(p->datasec); i++, vsi++) {
		var = btf__type_by_id(p->btf, vsi->type);
		if (!var || !btf_is_var(var))
			continue;
		name = btf__name_by_offset(p->btf, var->name_off);
		if (!name || strncmp(name, KCMUX_CFG_PREFIX,
				     strlen(KCMUX_CFG_PREFIX)))
			continue;
		if (seen++ != idx)
			continue;
		/* Through const, volatile and typedefs to the integer. */
		type = btf__type_by_id(p->btf,
				       btf__resolve_type(p->btf, var->type));
		if (!type || !btf_is_int(type) ||
		    (type->size != 4 && type->size != 8) ||
		    vsi->size != type->size ||
		    vsi->offset + vsi->size > p->rodata_size)
			return -EINVAL;
		key->name = name + strlen(KCMUX_CFG_PREFIX);
		key->offset = vsi->offset;
		key->size = type->size;
		key->is_signed = btf_int_encoding(type) & BTF_INT_SIGNED;
		return 0;
	}
	return -ENOENT;
}

static inline int kcmux_parser_find(const struct kcmux_parser *p,
				    const char *name,
				    struct kcmux_parser_key *key)
{
	int i, err;

	for (i = 0; !(err = kcmux_parser_key_at(p, i, key)); i++)
		if (!strcmp(key->name, name))
			return 0;
	return err;
}

/* The current (before load: default or set) value of a key. */
static inline long long kcmux_parser_key_value(const struct kcmux_parser *p,
					       const struct kcmux_parser_key *k)
{
	const uint8_t *at = p->rodata + k->offset;
	uint32_t v32;
	uint64_t v64;

	if (k->size == 4) {
		memcpy(&v32, at, 4);
		return k->is_signed ? (long long)(int32_t)v32 : (long long)v32;
	}
	memcpy(&v64, at, 8);
	return (long long)v64;
}

/* Reads key name into *value: 0, -ENOENT (no such key) or -EINVAL. */
static inline int kcmux_parser_get(const struct kcmux_parser *p,
				   const char *name, long long *value)
{
	struct kcmux_parser_key key;
	int err = kcmux_parser_find(p, name, &key);

	if (!err)
		*value = kcmux_parser_key_value(p, &key);
	return err;
}

/*
 * Sets key name before kcmux_parser_load(): 0, -ENOENT (no such key),
 * -ERANGE (value does not fit its type), -EBUSY (already loaded).
 * A __u64 key takes values from 0 to LLONG_MAX.
 */
static inline int kcmux_parser_set(struct kcmux_parser *p, const char *name,
				   long long value)
{
	struct kcmux_parser_key key;
	uint32_t v32;
	uint64_t v64;
	int err;

	if (bpf_program__fd(p->prog) >= 0)
		return -EBUSY;
	err = kcmux_parser_find(p, name, &key);
	if (err)
		return err;
	if (key.size == 4) {
		if (key.is_signed ? value < INT32_MIN || value > INT32_MAX :
				    value < 0 || value > UINT32_MAX)
			return -ERANGE;
		v32 = (uint32_t)value;
		memcpy(p->rodata + key.offset, &v32, 4);
	} else {
		if (!key.is_signed && value < 0)
			return -ERANGE;
		v64 = (uint64_t)value;
		memcpy(p->rodata + key.offset, &v64, 8);
	}
	return 0;
}

/* Loads the object: the program's fd (owned by p), or -errno. */
static inline int kcmux_parser_load(struct kcmux_parser *p)
{
	int err;

	if (p->rodata) {
		err = bpf_map__set_initial_value(p->rodata_map, p->rodata,
						 p->rodata_size);
		if (err)
			return err;
	}
	err = bpf_object__load(p->obj);
	return err ? err : bpf_program__fd(p->prog);
}

/* Closes the object; an attached program stays with its socket. */
static inline void kcmux_parser_close(struct kcmux_parser *p)
{
	bpf_object__close(p->obj);
	free(p->rodata);
	memset(p, 0, sizeof(*p));
}

#endif /* KCMUX_PARSER_LOAD_H */
