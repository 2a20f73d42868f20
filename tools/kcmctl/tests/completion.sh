#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# completion.sh KCMCTL PARSER_DIR: TAP test of bash-completion/kcmctl.
# Each case sets up a command line as bash would and checks what the
# completion function offers.

set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KCMCTL=$1
PARSER_DIR=$2
# shellcheck source=/dev/null
source "$HERE/../bash-completion/kcmctl"

n=0
failed=0

# complete "expected words" word... : the last word is being completed.
complete_case()
{
	local expect=$1 got
	shift
	COMP_WORDS=("$KCMCTL" "$@")
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMPREPLY=()
	_kcmctl
	got=$(printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' ' | sed 's/ $//')
	n=$((n + 1))
	if [[ $got == "$expect" ]]; then
		echo "ok $n - kcmctl $* -> $expect"
	else
		echo "not ok $n - kcmctl $*"
		echo "#   expected: '$expect'"
		echo "#   got:      '$got'"
		failed=$((failed + 1))
	fi
}

# complete_has "word..." word...: the offer includes these words.
complete_has()
{
	local expect=$1 w missing=""
	shift
	COMP_WORDS=("$KCMCTL" "$@")
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMPREPLY=()
	_kcmctl
	for w in $expect; do
		[[ " ${COMPREPLY[*]} " == *" $w "* ]] || missing+=" $w"
	done
	n=$((n + 1))
	if [[ -z $missing ]]; then
		echo "ok $n - kcmctl $* offers $expect"
	else
		echo "not ok $n - kcmctl $*: missing$missing (got: ${COMPREPLY[*]})"
		failed=$((failed + 1))
	fi
}

P=(-P "$PARSER_DIR")
complete_case "parser" pa
complete_case "show stats" s
complete_case "--parser-dir --pretty" --p
complete_case "list load" "${P[@]}" parser l
complete_case "testlen" "${P[@]}" parser list t
complete_case "obj pinned testlen" "${P[@]}" parser load ""
complete_case "extra max offset pin" "${P[@]}" parser load testlen ""
complete_case "" "${P[@]}" parser load testlen max ""
complete_case "extra offset pin" "${P[@]}" parser load testlen max 1 ""
complete_case "kcm pid tcp" attach ""
complete_case "kcm tcp" attach pid 1 ""
complete_case "framing parser" attach pid 1 kcm 3 tcp 4 ""
complete_case "extra max offset" "${P[@]}" attach pid 1 kcm 3 tcp 4 parser testlen ""
complete_case "prog" "${P[@]}" attach pid 1 kcm 3 tcp 4 parser obj x.o ""
complete_case "adjust endian header max offset" attach pid 1 kcm 3 tcp 4 framing width 2 ""
complete_case "1 2 3 4 8" attach pid 1 kcm 3 tcp 4 framing width ""
complete_case "big little" attach pid 1 kcm 3 tcp 4 framing endian ""
complete_case "excluded included" attach pid 1 kcm 3 tcp 4 framing header ""
complete_has "0 1 2" attach pid $$ kcm ""	# our own descriptors
complete_has "1 $$" attach pid ""
complete_case "kcm pid tcp" unattach ""
complete_case "" unattach pid 1 kcm 3 tcp 4 ""
complete_case "auto netlink proc" show source ""
complete_case "count help" monitor ""
echo "1..$n"
exit $((failed ? 1 : 0))
