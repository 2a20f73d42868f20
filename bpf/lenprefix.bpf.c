// SPDX-License-Identifier: GPL-2.0
/*
 * lenprefix: messages that carry their length in an integer field at a
 * fixed offset, for the many protocols that need nothing more.
 *
 *	value = the width-byte unsigned field at offset (big endian unless
 *		little_endian)
 *	len   = value + adjust, plus offset + width unless includes_header
 *
 * includes_header says whether the value counts the bytes up to and
 * including the field itself (e.g. a 4-byte length that includes itself:
 * includes_header 1; one that counts only what follows: 0).  adjust is
 * for any other constant, e.g. a trailer the length does not count.
 */
#include "kcmux_parser.bpf.h"

const volatile __u32 kcmux_cfg_offset = 0;
const volatile __u32 kcmux_cfg_width = 4;		/* 1, 2, 3, 4 or 8 */
const volatile __u32 kcmux_cfg_little_endian = 0;
const volatile __s32 kcmux_cfg_adjust = 0;
const volatile __u32 kcmux_cfg_includes_header = 0;
const volatile __u32 kcmux_cfg_max_size = 16777216;

/*
 * Above this a value is too large whatever adjust and the header add
 * (|adjust| < 2^31, header <= KCMUX_MAX_HEADER): no 64-bit overflow below.
 */
#define LENPREFIX_VALUE_MAX	(1ULL << 40)

SEC("socket")
int kcmux_lenprefix(struct __sk_buff *skb)
{
	__u32 off = kcmux_cfg_offset, width = kcmux_cfg_width;
	__u8 field[8] = {};
	__u64 value = 0, hdr;
	__u32 i;
	__s64 len;
	int err;

	if (width != 1 && width != 2 && width != 3 && width != 4 && width != 8)
		return -EINVAL;
	if (off > KCMUX_MAX_HEADER - width)
		return -EINVAL;
	hdr = off + width;
	if (skb->len < hdr)
		return 0;
	err = kcmux_load(skb, off, field, width);
	if (err)
		return err;

	for (i = 0; i < 8; i++) {
		if (i >= width)
			break;
		if (kcmux_cfg_little_endian)
			value |= (__u64)field[i] << (8 * i);
		else
			value = value << 8 | field[i];
	}
	if (value > LENPREFIX_VALUE_MAX)
		return -EMSGSIZE;

	len = (__s64)value + kcmux_cfg_adjust;
	if (!kcmux_cfg_includes_header)
		len += hdr;
	/* Shorter than its own header (negative included): corrupt. */
	if (len < (__s64)hdr)
		return -EPROTO;
	return kcmux_msg_len(len, hdr, kcmux_cfg_max_size);
}

char LICENSE[] SEC("license") = "GPL";
