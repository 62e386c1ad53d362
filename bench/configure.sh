#!/usr/bin/env bash
# configure.sh: the cost of kiln cc for a configure script, whose hundreds of compiler
# calls (probes, links, -E) all run locally, one after another.
#
#   bench/configure.sh [SRCDIR...]
#
# Each SRCDIR is a source tree with ./configure (default: Debian's GNU hello 2.10, an
# autotools configure with gnulib's probes, and Debian's zlib, a hand-written one; both
# fetched with test/debsrc/fetch.sh, which needs root the first time). It runs, REPS times
# each (default 5), interleaved so that a machine whose speed drifts treats them alike:
#   plain    ./configure CC=gcc
#   kiln     ./configure CC="kiln cc gcc"          (the C fast path; the default)
#   kiln-go  the same with KILN_FASTPATH=0         (the Go front for every call)
#   ccache   ./configure CC="ccache gcc"           (when ccache is installed)
# and prints the medians, each against plain, and kiln's counters. VARIANTS="plain kiln"
# runs only those.
# No server is needed: every call a configure script makes is decided locally.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
reps=${REPS:-5}
srcs=("$@")
if [ "${#srcs[@]}" -eq 0 ]; then
	cache=${KILN_DEBSRC:-$HOME/.cache/kiln-debsrc}
	"$root/test/debsrc/fetch.sh" hello 2.10-3 "$cache"
	"$root/test/debsrc/fetch.sh" zlib 1:1.2.13.dfsg-1 "$cache"
	srcs=("$cache/hello" "$cache/zlib")
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$root" && go build -o "$work/bin/" ./cmd/kiln ./cmd/kiln-core)
kiln=$work/bin/kiln
# A server nobody listens on: a call that is not decided locally shows as a fallback.
export KILN_SERVER=grpc://127.0.0.1:1 XDG_CACHE_HOME=$work/xdg-cache XDG_CONFIG_HOME=$work/xdg-config
export CCACHE_DIR=$work/ccache

now() { date +%s.%N; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
# timed DIR ENV...: seconds of one ./configure in DIR with the environment ENV.
timed() {
	local dir=$1 s e
	shift
	(cd "$dir" && make distclean >/dev/null 2>&1 || true)
	s=$(now)
	(cd "$dir" && env "$@" ./configure >"$work/last.log" 2>&1) || { cat "$work/last.log" >&2; echo "configure.sh: failed in $dir: $*" >&2; exit 1; }
	e=$(now)
	echo "$e - $s" | bc -l
}

if [ -n "${VARIANTS:-}" ]; then
	read -r -a variants <<<"$VARIANTS"
else
	variants=(plain kiln kiln-go)
	command -v ccache >/dev/null && variants+=(ccache)
fi
envof() {
	case $1 in
	plain) echo CC=gcc ;;
	kiln) echo "CC=$kiln cc gcc" ;;
	kiln-go) echo "CC=$kiln cc gcc" KILN_FASTPATH=0 ;;
	ccache) echo "CC=ccache gcc" ;;
	esac
}

for src in "${srcs[@]}"; do
	src=$(cd "$src" && pwd)
	tree=$work/tree
	rm -rf "$tree"
	cp -a "$src" "$tree"
	declare -A runs=()
	"$kiln" stats --zero >/dev/null
	for ((i = 0; i < reps; i++)); do
		for v in "${variants[@]}"; do
			case $v in
			kiln-go) t=$(timed "$tree" "CC=$kiln cc gcc" KILN_FASTPATH=0) ;;
			kiln) t=$(timed "$tree" "CC=$kiln cc gcc") ;;
			*) t=$(timed "$tree" "$(envof "$v")") ;;
			esac
			runs[$v]="${runs[$v]:-} $t"
		done
	done
	plain=$(median ${runs[plain]})
	calls=$("$kiln" stats --json | sed -n 's/.*"requests": *\([0-9]*\).*/\1/p')
	nk=0
	for v in "${variants[@]}"; do case $v in kiln*) nk=$((nk + 1)) ;; esac; done
	printf '\nconfigure of %s: %d runs each, %s compiler calls per kiln run\n' "$(basename "$src")" "$reps" "$((calls / (nk * reps > 0 ? nk * reps : 1)))"
	printf '  %-8s %8s %8s   %s\n' "" seconds "vs plain" "runs"
	for v in "${variants[@]}"; do
		m=$(median ${runs[$v]})
		printf '  %-8s %8.3f %+7.1f%%  %s\n' "$v" "$m" "$(echo "100 * ($m - $plain) / $plain" | bc -l)" "${runs[$v]}"
	done
	echo "  kiln stats (all kiln runs):"
	"$kiln" stats | grep -E '^(requests|local compiles|  [a-z_]+ |fallbacks|time in wrapper)' | sed 's/^/    /'
	unset runs
done
