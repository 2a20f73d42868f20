// SPDX-License-Identifier: GPL-2.0
/*
 * Parser objects: finding them, their configuration keys (through BTF),
 * setting the keys and loading (see parser_obj.h for the convention).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "parser_obj.h"

static int parser_debug_print(enum libbpf_print_level level, const char *fmt,
			      va_list ap)
{
	(void)level;
	return vfprintf(stderr, fmt, ap);
}

void parser_lib_init(bool debug)
{
	libbpf_set_print(debug ? parser_debug_print : NULL);
}

/* --- the spec on the command line ------------------------------------- */

static int parser_spec_kv(struct kc_args *a, const char *stop,
			  struct parser_spec *spec)
{
	const char *key, *val;
	int err;

	while (args_more(a)) {
		if (stop && !strcmp(args_peek(a), stop))
			break;
		key = args_next(a);
		err = args_value(a, key, &val);
		if (err)
			return err;
		if (spec->nkv == KC_ARRAY_SIZE(spec->kv))
			return kc_usage_err(E2BIG, "more than %d KEY VALUE pairs",
					    PARSER_MAX_KV);
		spec->kv[spec->nkv++] = key;
		spec->kv[spec->nkv++] = val;
	}
	return 0;
}

int parser_spec_parse(struct kc_args *a, const char *stop,
		      struct parser_spec *spec)
{
	const char *word;
	int err;

	memset(spec, 0, sizeof(*spec));
	word = args_next(a);
	if (!word || (stop && !strcmp(word, stop)))
		return kc_usage("missing parser: NAME, obj FILE or pinned PATH");
	if (!strcmp(word, "pinned")) {
		spec->kind = PARSER_SPEC_PINNED;
		return args_value(a, "pinned", &spec->arg);
	}
	if (!strcmp(word, "obj")) {
		spec->kind = PARSER_SPEC_OBJ;
		err = args_value(a, "obj", &spec->arg);
		if (err)
			return err;
		if (args_peek(a) && !strcmp(args_peek(a), "prog")) {
			args_next(a);
			err = args_value(a, "prog", &spec->prog);
			if (err)
				return err;
		}
	} else {
		spec->kind = PARSER_SPEC_NAME;
		spec->arg = word;
	}
	return parser_spec_kv(a, stop, spec);
}

/* --- finding objects -------------------------------------------------- */

static bool parser_name_ok(const char *name)
{
	return *name && *name != '.' && !strchr(name, '/') &&
	       strlen(name) < 128;
}

int parser_path(const struct kcmctl *k, const char *name, char *path,
		size_t size)
{
	int n;

	if (!parser_name_ok(name))
		return kc_usage("invalid parser name '%s'", name);
	n = snprintf(path, size, "%s/%s%s", k->parser_dir, name, PARSER_SUFFIX);
	if (n < 0 || (size_t)n >= size)
		return kc_usage_err(ENAMETOOLONG, "parser '%s' in %s", name,
				    k->parser_dir);
	if (access(path, R_OK))
		return kc_err(errno, "parser '%s' in %s (see kcmctl parser list)",
			      name, k->parser_dir);
	return 0;
}

/* --- keys ------------------------------------------------------------- */

const char *parser_key_type(const struct parser_key *key)
{
	static const char *const names[2][4] = {
		{ "u8", "u16", "u32", "u64" },
		{ "s8", "s16", "s32", "s64" },
	};
	unsigned int i = key->size == 1 ? 0 : key->size == 2 ? 1 :
			 key->size == 4 ? 2 : 3;

	return names[key->is_signed][i];
}

static uint64_t parser_read_int(const void *p, uint32_t size, bool is_signed)
{
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	uint64_t u64;

	switch (size) {
	case 1:
		memcpy(&u8, p, 1);
		return is_signed ? (uint64_t)(int64_t)(int8_t)u8 : u8;
	case 2:
		memcpy(&u16, p, 2);
		return is_signed ? (uint64_t)(int64_t)(int16_t)u16 : u16;
	case 4:
		memcpy(&u32, p, 4);
		return is_signed ? (uint64_t)(int64_t)(int32_t)u32 : u32;
	default:
		memcpy(&u64, p, 8);
		return u64;
	}
}

static void parser_write_int(void *p, uint32_t size, uint64_t v)
{
	uint8_t u8 = (uint8_t)v;
	uint16_t u16 = (uint16_t)v;
	uint32_t u32 = (uint32_t)v;

	switch (size) {
	case 1:
		memcpy(p, &u8, 1);
		break;
	case 2:
		memcpy(p, &u16, 2);
		break;
	case 4:
		memcpy(p, &u32, 4);
		break;
	default:
		memcpy(p, &v, 8);
		break;
	}
}

/* A kcmux_cfg_ variable's type: a plain integer of 1, 2, 4 or 8 bytes. */
static int parser_key_int_type(const struct btf *btf, uint32_t type_id,
			       struct parser_key *key)
{
	const struct btf_type *t;
	int id;

	id = btf__resolve_type(btf, type_id);	/* const, volatile, typedef */
	if (id < 0)
		return -EINVAL;
	t = btf__type_by_id(btf, id);
	if (!t || !btf_is_int(t) || btf_int_offset(t) ||
	    (btf_int_encoding(t) & BTF_INT_BOOL) ||
	    btf_int_bits(t) != t->size * 8 ||
	    (t->size != 1 && t->size != 2 && t->size != 4 && t->size != 8))
		return -EINVAL;
	key->size = t->size;
	key->is_signed = btf_int_encoding(t) & BTF_INT_SIGNED;
	return 0;
}

static int parser_add_key(const struct btf *btf,
			  const struct btf_var_secinfo *vsi, const char *name,
			  const void *data, size_t size,
			  struct parser_keys *keys)
{
	const struct btf_type *var = btf__type_by_id(btf, vsi->type);
	struct parser_key *key;
	const char *k = name + strlen(PARSER_KEY_PREFIX);

	if (keys->n == PARSER_MAX_KEYS)
		return -E2BIG;
	key = &keys->key[keys->n];
	memset(key, 0, sizeof(*key));
	if (!*k || strlen(k) >= sizeof(key->name) ||
	    parser_key_int_type(btf, var->type, key))
		return -EINVAL;
	if ((uint64_t)vsi->offset + key->size > size)
		return -EBADMSG;
	snprintf(key->name, sizeof(key->name), "%s", k);
	key->offset = vsi->offset;
	key->value = parser_read_int((const char *)data + vsi->offset,
				     key->size, key->is_signed);
	keys->n++;
	return 0;
}

int parser_keys_from_btf(const struct btf *btf, int datasec_id,
			 const void *data, size_t size,
			 struct parser_keys *keys)
{
	const struct btf_type *sec = btf__type_by_id(btf, datasec_id);
	const struct btf_var_secinfo *vsi;
	const struct btf_type *var;
	const char *name;
	unsigned int i;
	int err;

	keys->n = 0;
	if (!sec || !btf_is_datasec(sec))
		return -EINVAL;
	vsi = btf_var_secinfos(sec);
	for (i = 0; i < btf_vlen(sec); i++) {
		var = btf__type_by_id(btf, vsi[i].type);
		if (!var || !btf_is_var(var))
			continue;
		name = btf__name_by_offset(btf, var->name_off);
		if (!name || strncmp(name, PARSER_KEY_PREFIX,
				     strlen(PARSER_KEY_PREFIX)))
			continue;
		err = parser_add_key(btf, &vsi[i], name, data, size, keys);
		if (err)
			return err;
	}
	return 0;
}

void parser_key_print(struct printer *p, const struct parser_key *key)
{
	pr_text(p, " %s ", key->name);
	if (key->is_signed)
		pr_s64(p, PR_ANY, key->name, "%lld", (int64_t)key->value);
	else
		pr_u64(p, PR_ANY, key->name, "%llu", key->value);
}

/* --- opening, configuring, loading ----------------------------------- */

static struct bpf_map *parser_find_rodata(struct bpf_object *obj)
{
	struct bpf_map *map;
	const char *name;
	size_t len;

	/* libbpf names it "<object name prefix>.rodata". */
	bpf_object__for_each_map(map, obj) {
		name = bpf_map__name(map);
		len = strlen(name);
		if (bpf_map__is_internal(map) && len >= 7 &&
		    !strcmp(name + len - 7, ".rodata"))
			return map;
	}
	return NULL;
}

/*
 * libbpf has error codes of its own (LIBBPF_ERRNO__*, from 4000): the
 * errno that fits, with libbpf's explanation appended to msg.
 */
static int parser_std_errno(int err, char *msg, size_t size)
{
	char detail[128];
	size_t len = strlen(msg);

	if (err < 0)
		err = -err;
	if (err < __LIBBPF_ERRNO__START || err >= __LIBBPF_ERRNO__END)
		return err;
	libbpf_strerror(err, detail, sizeof(detail));
	if (len < size)
		snprintf(msg + len, size - len, " (libbpf: %s)", detail);
	switch (err) {
	case LIBBPF_ERRNO__LIBELF:
	case LIBBPF_ERRNO__FORMAT:
	case LIBBPF_ERRNO__KVERSION:
	case LIBBPF_ERRNO__ENDIAN:
	case LIBBPF_ERRNO__RELOC:
		return ENOEXEC;
	default:
		return EINVAL;
	}
}

int parser_bpf_err(int err, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	err = parser_std_errno(err, msg, sizeof(msg));
	return kc_err(err, "%s", msg);
}

/* Records why opening failed; returns -errno. */
static int parser_fail(struct parser_obj *po, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int parser_fail(struct parser_obj *po, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(po->why, sizeof(po->why), fmt, ap);
	va_end(ap);
	return -parser_std_errno(err, po->why, sizeof(po->why));
}

static int parser_obj_keys(struct parser_obj *po)
{
	const struct btf *btf = bpf_object__btf(po->obj);
	const void *init;
	int sec, err;

	po->rodata = parser_find_rodata(po->obj);
	if (!po->rodata || !btf)
		return 0;	/* no .rodata or no BTF: no keys */
	init = bpf_map__initial_value(po->rodata, &po->rodata_size);
	if (!init || !po->rodata_size)
		return 0;
	po->rodata_buf = malloc(po->rodata_size);
	if (!po->rodata_buf)
		return parser_fail(po, ENOMEM, "parser %s", po->label);
	memcpy(po->rodata_buf, init, po->rodata_size);
	sec = btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC);
	if (sec < 0)
		return 0;
	err = parser_keys_from_btf(btf, sec, po->rodata_buf, po->rodata_size,
				   &po->keys);
	if (err == -EINVAL)
		return parser_fail(po, err, "parser %s: a %s* variable is not a plain integer of 1, 2, 4 or 8 bytes",
				   po->label, PARSER_KEY_PREFIX);
	if (err)
		return parser_fail(po, err, "parser %s: configuration keys",
				   po->label);
	return 0;
}

static int parser_pick_prog(struct parser_obj *po, const char *prog_name)
{
	struct bpf_program *prog;

	if (prog_name) {
		po->prog = bpf_object__find_program_by_name(po->obj, prog_name);
		if (!po->prog)
			return parser_fail(po, ENOENT, "program '%s' in %s",
					   prog_name, po->label);
	} else {
		bpf_object__for_each_program(prog, po->obj) {
			if (bpf_program__type(prog) ==
			    BPF_PROG_TYPE_SOCKET_FILTER) {
				po->prog = prog;
				break;
			}
		}
		if (!po->prog)
			return parser_fail(po, ENOENT, "socket filter program in %s (SEC(\"socket\"))",
					   po->label);
	}
	if (bpf_program__type(po->prog) != BPF_PROG_TYPE_SOCKET_FILTER)
		return parser_fail(po, EINVAL, "program '%s' in %s is of type %s, not socket_filter",
				   bpf_program__name(po->prog), po->label,
				   libbpf_bpf_prog_type_str(bpf_program__type(po->prog)));
	/* Only the parser gets loaded. */
	bpf_object__for_each_program(prog, po->obj)
		bpf_program__set_autoload(prog, prog == po->prog);
	return 0;
}

int parser_obj_open(struct parser_obj *po, const char *path,
		    const char *label, const char *prog_name)
{
	int err;

	memset(po, 0, sizeof(*po));
	snprintf(po->path, sizeof(po->path), "%s", path);
	snprintf(po->label, sizeof(po->label), "%s", label);
	po->obj = bpf_object__open_file(path, NULL);
	if (!po->obj)
		return parser_fail(po, errno, "open BPF object %s", path);
	err = parser_obj_keys(po);
	if (!err)
		err = parser_pick_prog(po, prog_name);
	if (err)
		parser_obj_close(po);
	return err;
}

static struct parser_key *parser_obj_key(struct parser_obj *po,
					 const char *name)
{
	unsigned int i;

	for (i = 0; i < po->keys.n; i++)
		if (!strcmp(po->keys.key[i].name, name))
			return &po->keys.key[i];
	return NULL;
}

static int parser_unknown_key(const struct parser_obj *po, const char *name)
{
	char list[512] = "";
	size_t len = 0;
	unsigned int i;

	for (i = 0; i < po->keys.n && len < sizeof(list); i++)
		len += snprintf(list + len, sizeof(list) - len, "%s%s",
				i ? ", " : "", po->keys.key[i].name);
	if (!po->keys.n)
		return kc_usage("parser %s: unknown key '%s' (it has no keys)",
				po->label, name);
	return kc_usage("parser %s: unknown key '%s' (keys: %s)", po->label,
			name, list);
}

/* Parses value for key, within the range of the key's type. */
static int parser_key_value(const struct parser_obj *po,
			    const struct parser_key *key, const char *value,
			    uint64_t *out)
{
	unsigned int bits = key->size * 8;
	int64_t smin, smax, sv;
	uint64_t umax;
	int err;

	if (key->is_signed) {
		smax = (int64_t)((1ULL << (bits - 1)) - 1);
		smin = -smax - 1;
		err = parse_s64(value, smin, smax, &sv);
		*out = (uint64_t)sv;
		if (err == -ERANGE)
			return kc_usage_err(ERANGE, "parser %s: key %s: '%s' out of range for %s (%lld..%lld)",
					    po->label, key->name, value,
					    parser_key_type(key),
					    (long long)smin, (long long)smax);
	} else {
		umax = bits == 64 ? UINT64_MAX : (1ULL << bits) - 1;
		err = parse_u64(value, umax, out);
		if (err == -ERANGE)
			return kc_usage_err(ERANGE, "parser %s: key %s: '%s' out of range for %s (0..%llu)",
					    po->label, key->name, value,
					    parser_key_type(key),
					    (unsigned long long)umax);
	}
	if (err)
		return kc_usage("parser %s: key %s: '%s' is not a number",
				po->label, key->name, value);
	return 0;
}

int parser_obj_set(struct parser_obj *po, const char *name, const char *value)
{
	struct parser_key *key = parser_obj_key(po, name);
	uint64_t v;
	int err;

	if (!key)
		return parser_unknown_key(po, name);
	if (key->set)
		return kc_usage("parser %s: key %s given twice", po->label, name);
	err = parser_key_value(po, key, value, &v);
	if (err)
		return err;
	key->value = v;
	key->set = true;
	parser_write_int((char *)po->rodata_buf + key->offset, key->size, v);
	return 0;
}

int parser_obj_load(const struct kcmctl *k, struct parser_obj *po)
{
	int err;

	if (po->rodata_buf) {
		err = bpf_map__set_initial_value(po->rodata, po->rodata_buf,
						 po->rodata_size);
		if (err)
			return parser_bpf_err(err, "parser %s: set configuration",
					      po->label);
	}
	err = bpf_object__load(po->obj);
	if (err)
		return parser_bpf_err(err, "load parser %s%s", po->label,
				      k->debug ? "" :
				      " (-d shows the verifier log)");
	return 0;
}

int parser_obj_prog_fd(const struct parser_obj *po)
{
	return bpf_program__fd(po->prog);
}

void parser_obj_close(struct parser_obj *po)
{
	bpf_object__close(po->obj);
	free(po->rodata_buf);
	po->obj = NULL;
	po->prog = NULL;
	po->rodata_buf = NULL;
}

/* --- from a spec to a program fd ------------------------------------- */

int parser_check_prog_fd(int fd, const char *path)
{
	struct bpf_prog_info info;
	__u32 len = sizeof(info);
	char link[64], target[64];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return kc_err(errno, "%s", link);
	target[n] = '\0';
	if (strcmp(target, "anon_inode:bpf-prog"))
		return kc_err(EINVAL, "%s is not a BPF program (%s)", path,
			      target);
	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		return kc_err(errno, "BPF program %s", path);
	if (info.type != BPF_PROG_TYPE_SOCKET_FILTER)
		return kc_err(EINVAL, "BPF program %s is of type %s, not socket_filter",
			      path, libbpf_bpf_prog_type_str(info.type));
	return 0;
}

static int parser_open_pinned(const struct parser_spec *spec, int *prog_fd)
{
	int fd, err;

	fd = bpf_obj_get(spec->arg);
	if (fd < 0)
		return kc_err(errno, "pinned parser %s", spec->arg);
	err = parser_check_prog_fd(fd, spec->arg);
	if (err) {
		close(fd);
		return err;
	}
	*prog_fd = fd;
	return 0;
}

int parser_spec_prepare(const struct kcmctl *k, const struct parser_spec *spec,
			struct parser_obj *po)
{
	char path[PATH_MAX];
	unsigned int i;
	int err;

	memset(po, 0, sizeof(*po));
	if (spec->kind == PARSER_SPEC_PINNED) {
		if (spec->nkv)
			return kc_usage("a pinned parser takes no KEY VALUE: its configuration was fixed when it was loaded");
		return 0;
	}
	if (spec->kind == PARSER_SPEC_NAME) {
		err = parser_path(k, spec->arg, path, sizeof(path));
		if (err)
			return err;
		err = parser_obj_open(po, path, spec->arg, NULL);
	} else {
		err = parser_obj_open(po, spec->arg, spec->arg, spec->prog);
	}
	if (err)
		return kc_err(err, "%s", po->why);
	for (i = 0; !err && i < spec->nkv; i += 2)
		err = parser_obj_set(po, spec->kv[i], spec->kv[i + 1]);
	if (err)
		parser_obj_close(po);
	return err;
}

int parser_spec_load(const struct kcmctl *k, const struct parser_spec *spec,
		     struct parser_obj *po, int *prog_fd)
{
	int err;

	if (spec->kind == PARSER_SPEC_PINNED)
		return parser_open_pinned(spec, prog_fd);
	err = parser_obj_load(k, po);
	if (err) {
		parser_obj_close(po);
		return err;
	}
	*prog_fd = parser_obj_prog_fd(po);
	return 0;
}
