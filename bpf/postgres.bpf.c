// SPDX-License-Identifier: GPL-2.0
/*
 * postgres: the PostgreSQL frontend/backend protocol, version 3.
 *
 * A regular message is a type byte, then an int32 (big endian) length
 * that counts itself but not the type byte.  Type bytes are ASCII letters
 * and digits; anything else means the stream is out of step.
 *
 * The first message of a connection has no type byte: StartupMessage,
 * SSLRequest, GSSENCRequest and CancelRequest are an int32 length that
 * counts itself, then an int32 code.  The server refuses such a message
 * above 10000 bytes (its MAX_STARTUP_PACKET_LENGTH), so the length's top
 * byte is 0, and 0 is never a type byte: a message starting with byte 0
 * is one of these.
 *
 * Not framable: the server's one-byte answer ('S' or 'N') to SSLRequest
 * and GSSENCRequest has no length at all, and 'S' and 'N' are also the
 * type bytes of ParameterStatus and NoticeResponse.  The application
 * must read that byte itself (and set up TLS, if any, before it attaches
 * the socket: KCM cannot frame an encrypted stream) and attach the
 * server-side socket only after it.
 */
#include "kcmux_parser.bpf.h"

#define PG_TYPED_HEADER_LEN	5
#define PG_UNTYPED_HEADER_LEN	4
/* Length and code: the shortest untyped message. */
#define PG_UNTYPED_MIN		8

/* The server takes no message of 1 GiB or more (MaxAllocSize). */
const volatile __u32 kcmux_cfg_max_size = 1073741824;
const volatile __u32 kcmux_cfg_max_startup = 10000;

static __always_inline bool pg_type_ok(__u8 type)
{
	return (type >= 'A' && type <= 'Z') || (type >= 'a' && type <= 'z') ||
	       (type >= '0' && type <= '9');
}

SEC("socket")
int kcmux_postgres(struct __sk_buff *skb)
{
	__u8 hdr[PG_TYPED_HEADER_LEN];
	__u32 length;
	int err;

	if (!skb->len)
		return 0;
	err = kcmux_load(skb, 0, hdr, 1);
	if (err)
		return err;

	if (!hdr[0]) {
		if (skb->len < PG_UNTYPED_HEADER_LEN)
			return 0;
		err = kcmux_load(skb, 0, hdr, PG_UNTYPED_HEADER_LEN);
		if (err)
			return err;
		length = kcmux_be32(hdr);
		if (length < PG_UNTYPED_MIN)
			return -EPROTO;
		if (length > kcmux_cfg_max_startup)
			return -EMSGSIZE;
		return kcmux_msg_len(length, PG_UNTYPED_HEADER_LEN,
				     kcmux_cfg_max_size);
	}

	if (!pg_type_ok(hdr[0]))
		return -EPROTO;
	if (skb->len < PG_TYPED_HEADER_LEN)
		return 0;
	err = kcmux_load(skb, 0, hdr, PG_TYPED_HEADER_LEN);
	if (err)
		return err;
	length = kcmux_be32(&hdr[1]);
	/* The length counts itself: 4 is an empty message. */
	if (length < 4)
		return -EPROTO;
	return kcmux_msg_len(1 + (__u64)length, PG_TYPED_HEADER_LEN,
			     kcmux_cfg_max_size);
}

char LICENSE[] SEC("license") = "GPL";
