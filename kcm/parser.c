// SPDX-License-Identifier: GPL-2.0
/*
 * Parsers: what tells framing how long a message is.  Either a BPF socket
 * filter program (the in-tree interface) or a built-in length field
 * described by struct kcmux_framing, which needs no BPF at all and so
 * works for users who may not load programs.
 */
#include <linux/bpf.h>
#include <linux/filter.h>
#include <linux/skbuff.h>

#include "kcmux.h"

#define KCMUX_FRAMING_FLAGS	(KCMUX_FRAMING_LITTLE_ENDIAN | \
				 KCMUX_FRAMING_EXCLUDES_HEADER)

static int kcmux_framing_check(const struct kcmux_framing *fr)
{
	switch (fr->width) {
	case 1: case 2: case 3: case 4: case 8:
		break;
	default:
		return -EINVAL;
	}
	if ((fr->flags & ~KCMUX_FRAMING_FLAGS) || fr->reserved)
		return -EINVAL;
	if (fr->offset > KCMUX_FRAMING_MAX_OFFSET - fr->width)
		return -EINVAL;
	/* No message could be both long enough to hold its field and legal. */
	if (fr->max_size > KCMUX_MSG_MAX ||
	    (fr->max_size && fr->max_size < fr->offset + fr->width))
		return -EINVAL;
	return 0;
}

static int kcmux_parser_from_bpf_fd(struct kcmux_parser *parser, int bpf_fd)
{
	struct bpf_prog *prog;

	prog = bpf_prog_get_type(bpf_fd, BPF_PROG_TYPE_SOCKET_FILTER);
	if (IS_ERR(prog))
		return PTR_ERR(prog);
	memset(parser, 0, sizeof(*parser));
	parser->prog = prog;
	return 0;
}

/* Validates the parser half of SIOCKCMATTACH_EXT and takes what it names. */
int kcmux_parser_from_attach(struct kcmux_parser *parser,
			     const struct kcmux_attach *info)
{
	static const struct kcmux_framing no_framing;
	int err;

	switch (info->flags) {
	case KCMUX_ATTACH_BPF:
		if (memcmp(&info->framing, &no_framing, sizeof(no_framing)))
			return -EINVAL;
		return kcmux_parser_from_bpf_fd(parser, info->bpf_fd);
	case KCMUX_ATTACH_FRAMING:
		if (info->bpf_fd)
			return -EINVAL;
		err = kcmux_framing_check(&info->framing);
		if (err)
			return err;
		memset(parser, 0, sizeof(*parser));
		parser->framing = info->framing;
		if (!parser->framing.max_size)
			parser->framing.max_size = KCMUX_MSG_MAX;
		return 0;
	default:
		return -EINVAL;
	}
}

void kcmux_parser_release(struct kcmux_parser *parser)
{
	if (parser->prog)
		bpf_prog_put(parser->prog);
	parser->prog = NULL;
}

/* The built-in length field; view is linear and starts the message. */
static int kcmux_framing_parse(const struct kcmux_framing *fr,
			       const struct sk_buff *view)
{
	u32 header = fr->offset + fr->width;
	const u8 *field = view->data + fr->offset;
	bool little = fr->flags & KCMUX_FRAMING_LITTLE_ENDIAN;
	u64 value = 0;
	s64 len;
	int i;

	if (view->len < header)
		return 0;
	for (i = 0; i < fr->width; i++)
		value = value << 8 | field[little ? fr->width - 1 - i : i];

	/* Anything this large is over max_size whatever the adjustment. */
	if (value > U32_MAX)
		return -EMSGSIZE;
	len = (s64)value + fr->adjust;
	if (fr->flags & KCMUX_FRAMING_EXCLUDES_HEADER)
		len += header;
	if (len < header)
		return -EPROTO;
	if (len > fr->max_size)
		return -EMSGSIZE;
	return len;
}

/*
 * The strparser contract, whoever parses: >0 the message length, 0 need
 * more bytes, <0 an errno to post on the TCP socket.  Any context.
 */
int kcmux_parse(const struct kcmux_parser *parser, struct sk_buff *view)
{
	/* Socket filter programs return a u32; lengths and errnos fit. */
	if (parser->prog)
		return (int)bpf_prog_run_pin_on_cpu(parser->prog, view);
	return kcmux_framing_parse(&parser->framing, view);
}
