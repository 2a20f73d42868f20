#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# checkpatch.pl --strict over the given files, using the copy in Debian's
# linux-source tarball (extracted once into the cache).  compat.h is the
# one place allowed to test LINUX_VERSION_CODE.  Tracepoint headers keep
# the layout every include/trace/events/*.h file uses (a line per macro
# argument), which --strict flags as open-ended lines.
set -euo pipefail

cache=${KCMUX_CACHE:-$HOME/.cache/kcmux}
tarball=$(ls /usr/src/linux-source-6.12.tar.xz 2>/dev/null | head -n1)
dir=$cache/checkpatch

if [[ ! -x $dir/scripts/checkpatch.pl ]]; then
	[[ -n $tarball ]] || { echo "checkpatch: linux-source-6.12 is not installed" >&2; exit 1; }
	mkdir -p "$dir"
	tar -xJf "$tarball" -C "$dir" --strip-components=1 \
		linux-source-6.12/scripts/checkpatch.pl \
		linux-source-6.12/scripts/spelling.txt \
		linux-source-6.12/scripts/const_structs.checkpatch
fi

checkpatch() {
	"$dir/scripts/checkpatch.pl" --strict --no-tree --quiet --show-types \
		--ignore FILE_PATH_CHANGES,SPDX_LICENSE_TAG "$@"
}

rc=0
for f in "$@"; do
	case $f in
	*/compat.h) checkpatch --ignore LINUX_VERSION_CODE,CONSTANT_COMPARISON -f "$f" || rc=1 ;;
	*_trace.h) checkpatch --ignore OPEN_ENDED_LINE,PARENTHESIS_ALIGNMENT -f "$f" || rc=1 ;;
	*) checkpatch -f "$f" || rc=1 ;;
	esac
done
exit $rc
