/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What every kcmux message parser shares.
 *
 * A parser is a BPF_PROG_TYPE_SOCKET_FILTER program (SEC("socket")) run
 * on the bytes of one message, which start at offset 0 of the skb, and
 * returns
 *
 *	> 0	the length of the whole message, header included
 *	0	not enough bytes yet to tell the length
 *	< 0	a negative errno: the stream is broken and the kernel posts
 *		this value on the TCP socket
 *
 * skb->len is how many bytes are available so far.  A parser returns 0
 * only while the bytes it needs to find the length are not all there,
 * and every length it returns covers at least those bytes: the kernel
 * rejects a length no larger than what the parser already asked to see.
 *
 * Configuration: read-only globals named kcmux_cfg_<key> (see
 * Documentation/writing-a-parser.rst), set by the loader before the
 * program is loaded.  The verifier sees their values as constants.
 */
#ifndef KCMUX_PARSER_BPF_H
#define KCMUX_PARSER_BPF_H

#include <linux/bpf.h>
#include <linux/errno.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>

/* The largest length a parser can return: its result is an int. */
#define KCMUX_MSG_MAX		0x7fffffffULL

/*
 * A header field this far into a message is a configuration error: the
 * kernel would have to gather that much before the first length.
 */
#define KCMUX_MAX_HEADER	65535

/*
 * The length a parser returns for a message of len bytes whose length
 * was found in its first hdr bytes, or the error for it.  A max_size of
 * 0 means no limit other than KCMUX_MSG_MAX.
 *
 * A message shorter than the bytes that told its length cannot be: the
 * field is corrupt, or the stream is not where the parser thinks.
 */
static __always_inline int kcmux_msg_len(__u64 len, __u64 hdr, __u32 max_size)
{
	__u64 limit = max_size ? max_size : KCMUX_MSG_MAX;

	if (limit > KCMUX_MSG_MAX)
		limit = KCMUX_MSG_MAX;
	if (len < hdr)
		return -EPROTO;
	if (len > limit)
		return -EMSGSIZE;
	return (int)len;
}

/*
 * Copies len bytes at offset off of the message into to, once the
 * caller has checked that skb->len covers them.  Loading cannot fail
 * then; if it still does, the parser gives up loudly instead of waiting
 * for bytes that would not help.
 */
static __always_inline int kcmux_load(struct __sk_buff *skb, __u32 off,
				      void *to, __u32 len)
{
	return bpf_skb_load_bytes(skb, off, to, len) ? -EPROTO : 0;
}

/* Big-endian integers of a loaded header. */
static __always_inline __u32 kcmux_be16(const __u8 *p)
{
	return (__u32)p[0] << 8 | p[1];
}

static __always_inline __u32 kcmux_be24(const __u8 *p)
{
	return (__u32)p[0] << 16 | (__u32)p[1] << 8 | p[2];
}

static __always_inline __u32 kcmux_be32(const __u8 *p)
{
	return (__u32)p[0] << 24 | (__u32)p[1] << 16 | (__u32)p[2] << 8 | p[3];
}

/*
 * A protocol that starts each message with a 4-byte big-endian length
 * of what follows it, signed (int32): a negative one is an error.
 */
static __always_inline int kcmux_be32_prefixed(struct __sk_buff *skb,
					       __u32 max_size)
{
	__u8 hdr[4];
	__u32 value;
	int err;

	if (skb->len < sizeof(hdr))
		return 0;
	err = kcmux_load(skb, 0, hdr, sizeof(hdr));
	if (err)
		return err;
	value = kcmux_be32(hdr);
	if (value & 0x80000000U)
		return -EPROTO;
	return kcmux_msg_len((__u64)value + sizeof(hdr), sizeof(hdr), max_size);
}

#endif /* KCMUX_PARSER_BPF_H */
