// SPDX-License-Identifier: GPL-2.0
/*
 * testlen: the length parser kcmctl's tests attach when the project's
 * parser objects (bpf/) are not built.  It follows the configuration
 * convention (const volatile kcmux_cfg_* in .rodata), with one key of
 * each type kcmctl must handle:
 *
 *   offset  u32  where the 4-byte big-endian length field is
 *   extra   s32  added to the field: the message's total length
 *                (8 for the selftests' messages: 4-byte length of the
 *                payload, 4-byte sequence number, payload)
 *   max     u64  larger messages are an error (EMSGSIZE); 0: no limit
 *                of its own
 */
#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* A parser's error is a negative errno, posted on the TCP socket. */
#define TESTLEN_EPROTO		71
#define TESTLEN_EMSGSIZE	90

const volatile __u32 kcmux_cfg_offset = 0;
const volatile __s32 kcmux_cfg_extra = 8;
const volatile __u64 kcmux_cfg_max = 0;

SEC("socket")
int testlen(struct __sk_buff *skb)
{
	__u32 be_len;
	__s64 len;

	/* The field is not all there yet: ask for more bytes. */
	if (bpf_skb_load_bytes(skb, kcmux_cfg_offset, &be_len, sizeof(be_len)))
		return 0;
	len = (__s64)bpf_ntohl(be_len) + kcmux_cfg_extra;
	if (len < kcmux_cfg_offset + sizeof(be_len))
		return -TESTLEN_EPROTO;
	if (len > 0x7fffffff || (kcmux_cfg_max && (__u64)len > kcmux_cfg_max))
		return -TESTLEN_EMSGSIZE;
	return (int)len;
}

char LICENSE[] SEC("license") = "GPL";
