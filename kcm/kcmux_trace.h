/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Tracepoints: a message-level view of a mux, keyed by psock id.
 *
 *   echo 1 > /sys/kernel/tracing/events/kcmux/enable
 *   cat /sys/kernel/tracing/trace_pipe
 */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM kcmux

#if !defined(_KCMUX_TRACE_H) || defined(TRACE_HEADER_MULTI_READ)
#define _KCMUX_TRACE_H

#include <linux/tracepoint.h>

#include "kcmux.h"

DECLARE_EVENT_CLASS(kcmux_psock_msg,
	TP_PROTO(const struct kcmux_psock *psock, u32 len),
	TP_ARGS(psock, len),
	TP_STRUCT__entry(
		__field(u32, mux_id)
		__field(u32, psock_id)
		__field(u32, len)
	),
	TP_fast_assign(
		__entry->mux_id = psock->mux->id;
		__entry->psock_id = psock->id;
		__entry->len = len;
	),
	TP_printk("mux=%u psock=%u len=%u",
		  __entry->mux_id, __entry->psock_id, __entry->len)
);

/* A whole message was cut from a psock's stream. */
DEFINE_EVENT(kcmux_psock_msg, kcmux_msg_rx,
	TP_PROTO(const struct kcmux_psock *psock, u32 len),
	TP_ARGS(psock, len)
);

/* A whole message went into a psock's TCP socket. */
DEFINE_EVENT(kcmux_psock_msg, kcmux_msg_tx,
	TP_PROTO(const struct kcmux_psock *psock, u32 len),
	TP_ARGS(psock, len)
);

/* An error was posted on a psock's TCP socket; the psock stopped. */
TRACE_EVENT(kcmux_psock_error,
	TP_PROTO(const struct kcmux_psock *psock, int err),
	TP_ARGS(psock, err),
	TP_STRUCT__entry(
		__field(u32, mux_id)
		__field(u32, psock_id)
		__field(int, err)
	),
	TP_fast_assign(
		__entry->mux_id = psock->mux->id;
		__entry->psock_id = psock->id;
		__entry->err = err;
	),
	TP_printk("mux=%u psock=%u err=%d",
		  __entry->mux_id, __entry->psock_id, __entry->err)
);

/*
 * A received message left the KCM socket it was queued on (the socket
 * closed or disabled receiving) for another one or the mux's hold queue.
 */
TRACE_EVENT(kcmux_requeue,
	TP_PROTO(const struct kcmux_mux *mux, u32 psock_id, u32 len),
	TP_ARGS(mux, psock_id, len),
	TP_STRUCT__entry(
		__field(u32, mux_id)
		__field(u32, psock_id)
		__field(u32, len)
	),
	TP_fast_assign(
		__entry->mux_id = mux->id;
		__entry->psock_id = psock_id;
		__entry->len = len;
	),
	TP_printk("mux=%u psock=%u len=%u",
		  __entry->mux_id, __entry->psock_id, __entry->len)
);

#endif /* _KCMUX_TRACE_H */

/* This part must be outside the include guard. */
#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE kcmux_trace
#include <trace/define_trace.h>
