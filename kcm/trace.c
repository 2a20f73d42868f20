// SPDX-License-Identifier: GPL-2.0
/* Instantiates the tracepoints declared in kcmux_trace.h. */
#define CREATE_TRACE_POINTS
#include "kcmux_trace.h"
