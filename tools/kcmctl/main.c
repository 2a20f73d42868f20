// SPDX-License-Identifier: GPL-2.0
/*
 * kcmctl: inspect and configure AF_KCM multiplexors (kcmux and the
 * in-tree kcm module).
 *
 * The command line follows bpftool and iproute2: global options, then an
 * object and a command, each of which may be abbreviated to any unique
 * prefix ("kcmctl sh" is "kcmctl show").
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kcmctl.h"
#include "parser_obj.h"

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: kcmctl [OPTIONS] OBJECT { COMMAND | help }\n"
		"\n"
		"OBJECT := { parser | attach | unattach | show | stats | monitor |\n"
		"            version | help }\n"
		"\n"
		"  kcmctl parser { list | load | show | help }    BPF length parsers\n"
		"  kcmctl attach pid PID kcm FD tcp FD { parser SPEC | framing SPEC }\n"
		"  kcmctl unattach pid PID kcm FD tcp FD\n"
		"  kcmctl show [ source { auto | netlink | proc } ]\n"
		"  kcmctl stats\n"
		"  kcmctl monitor [ count N ]\n"
		"\n"
		"OPTIONS:\n"
		"  -j, --json            JSON output\n"
		"  -p, --pretty          indented JSON output (implies -j)\n"
		"  -n, --netns NETNS     run in network namespace /run/netns/NETNS\n"
		"                        (NETNS with a '/' is a path: /proc/PID/ns/net)\n"
		"  -P, --parser-dir DIR  parser objects (default: $KCMUX_PARSER_DIR,\n"
		"                        else " KCMUX_PARSER_DIR ")\n"
		"  -d, --debug           libbpf and verifier messages on stderr\n"
		"  -V, --version         print the version\n"
		"  -h, --help            this help\n"
		"\n"
		"Every object takes 'help': kcmctl parser help, kcmctl attach help ...\n");
}

static int cmd_help(struct kcmctl *k, struct kc_args *a)
{
	(void)k;
	(void)a;
	usage(stdout);
	return 0;
}

static int cmd_version(struct kcmctl *k, struct kc_args *a)
{
	int err = args_end(a);

	if (err)
		return err;
	pr_open_object(&k->pr, NULL);
	pr_str(&k->pr, PR_ANY, "version", "kcmctl %s\n", KCMCTL_VERSION);
	pr_close_object(&k->pr);
	return 0;
}

static const struct kc_cmd kc_objects[] = {
	{ "parser",	cmd_parser },
	{ "attach",	cmd_attach },
	{ "unattach",	cmd_unattach },
	{ "show",	cmd_show },
	{ "stats",	cmd_stats },
	{ "monitor",	cmd_monitor },
	{ "version",	cmd_version },
	{ "help",	cmd_help },
};

/* Like `ip -n NAME`: the rest runs in that network namespace. */
static int enter_netns(const char *netns)
{
	char path[4096];
	int fd, n;

	if (!*netns)
		return kc_usage("empty network namespace name");
	if (strchr(netns, '/'))
		n = snprintf(path, sizeof(path), "%s", netns);
	else
		n = snprintf(path, sizeof(path), "/run/netns/%s", netns);
	if (n < 0 || (size_t)n >= sizeof(path))
		return kc_usage_err(ENAMETOOLONG, "network namespace '%s'", netns);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return kc_err(errno, "network namespace %s", path);
	if (setns(fd, CLONE_NEWNET)) {
		int err = errno;

		close(fd);
		return kc_err(err, "enter network namespace %s", path);
	}
	close(fd);
	return 0;
}

static const struct option kc_long_options[] = {
	{ "json",	no_argument,		NULL, 'j' },
	{ "pretty",	no_argument,		NULL, 'p' },
	{ "netns",	required_argument,	NULL, 'n' },
	{ "parser-dir",	required_argument,	NULL, 'P' },
	{ "debug",	no_argument,		NULL, 'd' },
	{ "version",	no_argument,		NULL, 'V' },
	{ "help",	no_argument,		NULL, 'h' },
	{ NULL,		0,			NULL, 0 },
};

/* 0: go on; 1: done (help, version); KC_USAGE: reported. */
static int parse_options(struct kcmctl *k, int argc, char **argv)
{
	int c;

	opterr = 0;	/* our own one-line messages */
	while ((c = getopt_long(argc, argv, "+:jpn:P:dVh", kc_long_options,
				NULL)) != -1) {
		switch (c) {
		case 'j':
			k->json = true;
			break;
		case 'p':
			k->json = true;
			k->pretty = true;
			break;
		case 'n':
			k->netns = optarg;
			break;
		case 'P':
			k->parser_dir = optarg;
			break;
		case 'd':
			k->debug = true;
			break;
		case 'V':
			printf("kcmctl %s\n", KCMCTL_VERSION);
			return 1;
		case 'h':
			usage(stdout);
			return 1;
		case ':':
			return kc_usage("option '%s' needs a value",
					argv[optind - 1]);
		default:
			if (optopt)
				return kc_usage("unknown option '-%c'", optopt);
			return kc_usage("unknown option '%s'", argv[optind - 1]);
		}
	}
	return 0;
}

static int kcmctl_main(struct kcmctl *k, int argc, char **argv)
{
	struct kc_args a;
	int err;

	err = parse_options(k, argc, argv);
	if (err)
		return err > 0 ? 0 : err;
	if (!k->parser_dir)
		k->parser_dir = getenv("KCMUX_PARSER_DIR");
	if (!k->parser_dir || !*k->parser_dir)
		k->parser_dir = KCMUX_PARSER_DIR;
	parser_lib_init(k->debug);
	pr_init(&k->pr, stdout, k->json, k->pretty);

	a.argc = argc - optind;
	a.argv = argv + optind;
	if (!args_more(&a))
		return kc_usage("missing object (try 'kcmctl help')");
	if (k->netns) {
		err = enter_netns(k->netns);
		if (err)
			return err;
	}
	err = kc_dispatch(k, kc_objects, KC_ARRAY_SIZE(kc_objects), "object",
			  &a);
	if (err)
		return err;
	err = pr_finish(&k->pr);
	if (err)
		return kc_err(err, "write to stdout");
	return 0;
}

int main(int argc, char **argv)
{
	struct kcmctl k = { 0 };

	switch (kcmctl_main(&k, argc, argv)) {
	case 0:
		return 0;
	case KC_USAGE:
		return 2;
	default:
		return 1;
	}
}
