// SPDX-License-Identifier: GPL-2.0
/*
 * kcmctl parser: the BPF length parsers available in the parser
 * directory (list), loading one into bpffs (load ... pin), and the
 * parsers the kernel has loaded, with their configuration (show).
 */
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/statfs.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/magic.h>

#include "genl.h"
#include "parser_obj.h"

#define PARSER_MAX_LISTED	256
#define PARSER_DESC_MAX		256
#define PARSER_MAX_ATTACHED	1024

static void parser_usage(void)
{
	printf("Usage: kcmctl parser { list | load | show | help }\n"
	       "\n"
	       "  kcmctl parser list [ NAME ]\n"
	       "  kcmctl parser load SPEC pin PATH\n"
	       "  kcmctl parser show [ PATH ]\n"
	       "\n"
	       "SPEC := { NAME [ KEY VALUE ]... |\n"
	       "          obj FILE [ prog PROGRAM ] [ KEY VALUE ]... }\n"
	       "\n"
	       "list: the parsers of the parser directory (-P DIR), with their\n"
	       "      keys and default values.\n"
	       "load: loads a parser with its keys set and pins it at PATH, on\n"
	       "      a BPF file system.\n"
	       "show: the pinned parser at PATH, or every loaded socket filter\n"
	       "      that looks like a parser, with its configuration.\n");
}

/* --- parser list ------------------------------------------------------ */

/* The description of name in DIR/parsers.txt (name TAB text TAB keys). */
static void parser_description(const char *dir, const char *name, char *desc,
			       size_t size)
{
	char path[PATH_MAX], line[1024], *tab, *end;
	size_t len = strlen(name);
	FILE *f;

	desc[0] = '\0';
	snprintf(path, sizeof(path), "%s/parsers.txt", dir);
	f = fopen(path, "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, name, len) || line[len] != '\t')
			continue;
		tab = line + len + 1;
		end = strpbrk(tab, "\t\n");
		if (end)
			*end = '\0';
		snprintf(desc, size, "%s", tab);
		break;
	}
	fclose(f);
}

static int parser_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names of the *.bpf.o of the parser dir, sorted; *n of them. */
static int parser_scan_dir(const struct kcmctl *k, char **names, size_t max,
			   size_t *n)
{
	size_t slen = strlen(PARSER_SUFFIX), len;
	struct dirent *de;
	DIR *d;

	*n = 0;
	d = opendir(k->parser_dir);
	if (!d)
		return kc_err(errno, "parser directory %s", k->parser_dir);
	while ((de = readdir(d)) && *n < max) {
		len = strlen(de->d_name);
		if (len <= slen || de->d_name[0] == '.' ||
		    strcmp(de->d_name + len - slen, PARSER_SUFFIX))
			continue;
		names[*n] = strndup(de->d_name, len - slen);
		if (!names[*n]) {
			closedir(d);
			while (*n)
				free(names[--*n]);
			return kc_err(ENOMEM, "parser directory %s",
				      k->parser_dir);
		}
		(*n)++;
	}
	closedir(d);
	qsort(names, *n, sizeof(*names), parser_cmp);
	return 0;
}

static void parser_print_keys(struct printer *p, const struct parser_keys *keys)
{
	const struct parser_key *key;
	unsigned int i;

	pr_open_array(p, "keys");
	for (i = 0; i < keys->n; i++) {
		key = &keys->key[i];
		pr_open_object(p, NULL);
		pr_str(p, PR_ANY, "name", "    %s", key->name);
		pr_str(p, PR_ANY, "type", " %s", parser_key_type(key));
		pr_text(p, " default");
		if (key->is_signed)
			pr_s64(p, PR_ANY, "default", " %lld", (int64_t)key->value);
		else
			pr_u64(p, PR_ANY, "default", " %llu", key->value);
		pr_text(p, "\n");
		pr_close_object(p);
	}
	pr_close_array(p);
}

static void parser_list_one(const struct kcmctl *k, struct printer *p,
			    const char *name)
{
	char path[PATH_MAX], desc[PARSER_DESC_MAX], why[512];
	struct parser_obj po;
	int err;

	snprintf(path, sizeof(path), "%s/%s%s", k->parser_dir, name,
		 PARSER_SUFFIX);
	parser_description(k->parser_dir, name, desc, sizeof(desc));
	pr_open_object(p, NULL);
	pr_str(p, PR_ANY, "name", "%s", name);
	pr_str(p, PR_ANY, "description", desc[0] ? ": %s" : "%s", desc);
	pr_str(p, PR_JSON, "file", NULL, path);
	err = parser_obj_open(&po, path, name, NULL);
	if (err) {
		snprintf(why, sizeof(why), "%s: %s", po.why, strerror(-err));
		pr_str(p, PR_ANY, "error", " (unusable: %s)", why);
		pr_text(p, "\n");
	} else {
		pr_text(p, "\n");
		parser_print_keys(p, &po.keys);
		parser_obj_close(&po);
	}
	pr_close_object(p);
}

static int parser_list(struct kcmctl *k, struct kc_args *a)
{
	char *names[PARSER_MAX_LISTED], path[PATH_MAX];
	const char *only = NULL;
	size_t n, i;
	int err;

	if (args_more(a)) {
		only = args_next(a);
		err = args_end(a);
		if (!err)
			err = parser_path(k, only, path, sizeof(path));
		if (err)
			return err;
	}
	if (only) {
		pr_open_array(&k->pr, NULL);
		parser_list_one(k, &k->pr, only);
		pr_close_array(&k->pr);
		return 0;
	}
	err = parser_scan_dir(k, names, PARSER_MAX_LISTED, &n);
	if (err)
		return err;
	pr_open_array(&k->pr, NULL);
	for (i = 0; i < n; i++) {
		parser_list_one(k, &k->pr, names[i]);
		free(names[i]);
	}
	pr_close_array(&k->pr);
	return 0;
}

/* --- loaded programs ------------------------------------------------- */

struct loaded_parser {
	struct bpf_prog_info info;
	struct parser_keys keys;
	bool has_config;		/* a .rodata map with BTF */
};

/* The keys of a .rodata map (map_id) of a loaded program, if it is one. */
static int parser_map_config(uint32_t map_id, struct loaded_parser *lp)
{
	struct bpf_map_info info;
	__u32 len = sizeof(info), zero = 0;
	const struct btf_type *t;
	struct btf *btf = NULL;
	void *value = NULL;
	int fd, err = 0;

	fd = bpf_map_get_fd_by_id(map_id);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(fd, &info, &len)) {
		err = -errno;
		goto out;
	}
	if (!info.btf_id || !info.btf_value_type_id || !info.value_size ||
	    info.type != BPF_MAP_TYPE_ARRAY)
		goto out;
	btf = btf__load_from_kernel_by_id(info.btf_id);
	if (!btf) {
		err = -errno;
		goto out;
	}
	t = btf__type_by_id(btf, info.btf_value_type_id);
	if (!t || !btf_is_datasec(t) ||
	    strcmp(btf__name_by_offset(btf, t->name_off), ".rodata"))
		goto out;
	value = calloc(1, info.value_size);
	if (!value) {
		err = -ENOMEM;
		goto out;
	}
	if (bpf_map_lookup_elem(fd, &zero, value)) {
		err = -errno;
		goto out;
	}
	err = parser_keys_from_btf(btf, info.btf_value_type_id, value,
				   info.value_size, &lp->keys);
	lp->has_config = !err;
out:
	free(value);
	btf__free(btf);
	close(fd);
	return err;
}

static int parser_read_loaded(int fd, struct loaded_parser *lp)
{
	__u32 len = sizeof(lp->info), nr_maps, i;
	uint32_t *map_ids;
	int err = 0;

	memset(lp, 0, sizeof(*lp));
	if (bpf_obj_get_info_by_fd(fd, &lp->info, &len))
		return -errno;
	nr_maps = lp->info.nr_map_ids;
	if (!nr_maps)
		return 0;
	map_ids = calloc(nr_maps, sizeof(*map_ids));
	if (!map_ids)
		return -ENOMEM;
	memset(&lp->info, 0, sizeof(lp->info));
	lp->info.nr_map_ids = nr_maps;
	lp->info.map_ids = (uintptr_t)map_ids;
	len = sizeof(lp->info);
	if (bpf_obj_get_info_by_fd(fd, &lp->info, &len))
		err = -errno;
	for (i = 0; !err && i < lp->info.nr_map_ids && i < nr_maps; i++) {
		err = parser_map_config(map_ids[i], lp);
		if (lp->has_config)
			break;
	}
	lp->info.map_ids = 0;
	free(map_ids);
	return err;
}

static void parser_print_loaded(struct printer *p,
				const struct loaded_parser *lp,
				const char *pinned, int attached)
{
	char tag[2 * BPF_TAG_SIZE + 1];
	unsigned int i;

	for (i = 0; i < BPF_TAG_SIZE; i++)
		snprintf(tag + 2 * i, 3, "%02x", lp->info.tag[i]);
	pr_open_object(p, NULL);
	pr_u64(p, PR_ANY, "id", "%llu:", lp->info.id);
	pr_str(p, PR_ANY, "name", " %s", lp->info.name);
	pr_str(p, PR_ANY, "tag", " tag %s", tag);
	if (pinned)
		pr_str(p, PR_ANY, "pinned", " pinned %s", pinned);
	if (attached >= 0)
		pr_bool(p, PR_ANY, "attached", " attached", attached);
	pr_text(p, "\n");
	if (lp->has_config) {
		pr_open_object(p, "config");
		pr_text(p, "    config");
		for (i = 0; i < lp->keys.n; i++)
			parser_key_print(p, &lp->keys.key[i]);
		pr_text(p, "\n");
		pr_close_object(p);
	}
	pr_close_object(p);
}

static int parser_show_pinned(struct kcmctl *k, const char *path)
{
	struct loaded_parser lp;
	int fd, err;

	fd = bpf_obj_get(path);
	if (fd < 0)
		return kc_err(errno, "pinned parser %s", path);
	err = parser_check_prog_fd(fd, path);
	if (!err) {
		err = parser_read_loaded(fd, &lp);
		if (err)
			err = kc_err(err, "BPF program %s", path);
	}
	close(fd);
	if (err)
		return err;
	pr_open_array(&k->pr, NULL);
	parser_print_loaded(&k->pr, &lp, path, -1);
	pr_close_array(&k->pr);
	return 0;
}

/* What makes a socket filter look like a parser. */
struct parser_hints {
	uint32_t attached[PARSER_MAX_ATTACHED];	/* prog ids psocks use */
	size_t nattached;
	bool know_attached;			/* netlink told us */
	char prog_names[PARSER_MAX_LISTED][BPF_OBJ_NAME_LEN];
	size_t nnames;				/* of the parser dir */
};

static bool parser_is_attached(const struct parser_hints *h, uint32_t id)
{
	size_t i;

	for (i = 0; i < h->nattached; i++)
		if (h->attached[i] == id)
			return true;
	return false;
}

/* Program names of the parser dir's objects, as the kernel cuts them. */
static void parser_hint_names(const struct kcmctl *k, struct parser_hints *h)
{
	char *names[PARSER_MAX_LISTED], path[PATH_MAX];
	struct parser_obj po;
	size_t n = 0, i;
	bool ok;

	/* Quietly: the directory is only a hint here. */
	ok = access(k->parser_dir, R_OK) == 0 &&
	     !parser_scan_dir(k, names, PARSER_MAX_LISTED, &n);
	for (i = 0; ok && i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s%s", k->parser_dir,
			 names[i], PARSER_SUFFIX);
		if (!parser_obj_open(&po, path, names[i], NULL)) {
			snprintf(h->prog_names[h->nnames++], BPF_OBJ_NAME_LEN,
				 "%s", bpf_program__name(po.prog));
			parser_obj_close(&po);
		}
	}
	for (i = 0; i < n; i++)
		free(names[i]);
}

static void parser_hint_attached(struct parser_hints *h)
{
	struct kcm_genl g;

	if (kcm_genl_open(&g, false))
		return;
	h->know_attached = !kcm_genl_parser_prog_ids(&g, h->attached,
						     PARSER_MAX_ATTACHED,
						     &h->nattached);
	kcm_genl_close(&g);
}

static bool parser_looks_like(const struct parser_hints *h,
			      const struct loaded_parser *lp)
{
	size_t i;

	if (lp->info.type != BPF_PROG_TYPE_SOCKET_FILTER)
		return false;
	if (lp->keys.n || parser_is_attached(h, lp->info.id))
		return true;
	for (i = 0; i < h->nnames; i++)
		if (!strcmp(h->prog_names[i], lp->info.name))
			return true;
	return false;
}

/* 0, 1 if the program is gone (skip it), KC_FAIL. */
static int parser_show_id(struct kcmctl *k, const struct parser_hints *h,
			  uint32_t id)
{
	struct loaded_parser lp;
	int fd, err;

	fd = bpf_prog_get_fd_by_id(id);
	if (fd < 0 && errno == ENOENT)
		return 1;
	if (fd < 0)
		return kc_err(errno, "BPF program %u", id);
	err = parser_read_loaded(fd, &lp);
	close(fd);
	if (err == -ENOENT)
		return 1;
	if (err)
		return kc_err(err, "BPF program %u", id);
	if (parser_looks_like(h, &lp))
		parser_print_loaded(&k->pr, &lp, NULL, h->know_attached ?
				    parser_is_attached(h, id) : -1);
	return 0;
}

static int parser_show_all(struct kcmctl *k)
{
	struct parser_hints *h = calloc(1, sizeof(*h));
	uint32_t id = 0;
	int err = 0;

	if (!h)
		return kc_err(ENOMEM, "parser show");
	parser_hint_names(k, h);
	parser_hint_attached(h);
	/* Nothing printed before the first program is known to be readable. */
	if (bpf_prog_get_next_id(0, &id)) {
		err = errno == ENOENT ? 0 : kc_err(errno, "list BPF programs");
		id = 0;
	}
	pr_open_array(&k->pr, NULL);
	while (!err && id) {
		err = parser_show_id(k, h, id);
		if (err > 0)
			err = 0;
		if (!err && bpf_prog_get_next_id(id, &id)) {
			if (errno != ENOENT)
				err = kc_err(errno, "list BPF programs");
			break;
		}
	}
	pr_close_array(&k->pr);
	free(h);
	return err;
}

static int parser_show(struct kcmctl *k, struct kc_args *a)
{
	const char *path = args_next(a);
	int err = args_end(a);

	if (err)
		return err;
	return path ? parser_show_pinned(k, path) : parser_show_all(k);
}

/* --- parser load ------------------------------------------------------ */

/* bpffs refuses pins elsewhere; say so before loading anything. */
static int parser_check_pin_path(const char *path)
{
	char copy[PATH_MAX];
	struct statfs st;

	if (!*path || strlen(path) >= sizeof(copy))
		return kc_usage("invalid pin path '%s'", path);
	snprintf(copy, sizeof(copy), "%s", path);
	if (statfs(dirname(copy), &st))
		return kc_err(errno, "pin path %s", path);
	if (st.f_type != BPF_FS_MAGIC)
		return kc_err(EINVAL, "pin path %s is not on a BPF file system (mount -t bpf bpf /sys/fs/bpf)",
			      path);
	if (!access(path, F_OK))
		return kc_err(EEXIST, "pin path %s", path);
	return 0;
}

static int parser_load(struct kcmctl *k, struct kc_args *a)
{
	struct loaded_parser lp;
	struct parser_spec spec;
	struct parser_obj po;
	const char *path;
	int err, fd;

	err = parser_spec_parse(a, "pin", &spec);
	if (err)
		return err;
	if (spec.kind == PARSER_SPEC_PINNED)
		return kc_usage("parser load takes NAME or obj FILE, not pinned");
	if (!args_next(a))
		return kc_usage("parser load needs 'pin PATH'");
	err = args_value(a, "pin", &path);
	if (!err)
		err = args_end(a);
	if (!err)
		err = parser_spec_prepare(k, &spec, &po);
	if (err)
		return err;
	err = parser_check_pin_path(path);
	if (!err)
		err = parser_spec_load(k, &spec, &po, &fd);
	if (err)
		goto out;
	err = bpf_program__pin(po.prog, path);
	if (err) {
		err = parser_bpf_err(err, "pin parser %s at %s", po.label,
				     path);
		goto out;
	}
	err = parser_read_loaded(fd, &lp);
	if (err) {
		err = kc_err(err, "BPF program %s", path);
		goto out;
	}
	pr_open_array(&k->pr, NULL);
	parser_print_loaded(&k->pr, &lp, path, -1);
	pr_close_array(&k->pr);
out:
	parser_obj_close(&po);
	return err;
}

static int parser_help(struct kcmctl *k, struct kc_args *a)
{
	(void)k;
	(void)a;
	parser_usage();
	return 0;
}

static const struct kc_cmd parser_cmds[] = {
	{ "list",	parser_list },
	{ "load",	parser_load },
	{ "show",	parser_show },
	{ "help",	parser_help },
};

int cmd_parser(struct kcmctl *k, struct kc_args *a)
{
	if (!args_more(a))
		return parser_list(k, a);
	if (!strcmp(args_peek(a), "-h") || !strcmp(args_peek(a), "--help"))
		return parser_help(k, a);
	return kc_dispatch(k, parser_cmds, KC_ARRAY_SIZE(parser_cmds),
			   "parser command", a);
}
