#!/usr/bin/env bash
# cc-build.sh: time a real C project built plainly, through kiln cc and through ccache.
#
#   bench/cc-build.sh [SRCDIR]
#
# SRCDIR is a source tree with ./configure and make (default: Debian's zlib source, fetched
# with test/debsrc/fetch.sh, which needs root the first time). Environment: JOBS (make -j,
# default 4), REPS (runs per figure, the median is shown; default 3), WORKERS (slots of the
# server's in-process worker, default 2), COLD=1 (only local and kiln cold, in alternation,
# each with the CPU time the whole machine spent during it: steadier than wall time on a
# machine whose speed drifts), DATA (the server's data directory, default in the scratch
# directory).
#
# It builds kiln, starts `kiln server` (memory store, WORKERS local slots, loopback) and
# reports the median of REPS runs of:
#   configure   ./configure with CC=gcc and with CC="kiln cc gcc"
#   local       make -j$JOBS with plain gcc
#   kiln first  the first build against the empty server: uploads the toolchain (~80 MB)
#   kiln cold   every compile a cache miss run on the workers (a fresh instance name each
#               run; the toolchain is already in the CAS, as on any used cluster)
#   kiln warm   every compile an action cache hit (make clean; make)
#   ccache warm every compile a ccache hit (direct mode, make clean; make)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
jobs=${JOBS:-4}
reps=${REPS:-3}
workers=${WORKERS:-2}
src=${1:-}
if [ -z "$src" ]; then
	cache=${KILN_DEBSRC:-$HOME/.cache/kiln-debsrc}
	"$root/test/debsrc/fetch.sh" zlib 1:1.2.13.dfsg-1 "$cache"
	src=$cache/zlib
fi
src=$(cd "$src" && pwd)
command -v ccache >/dev/null || { echo "cc-build.sh: ccache is not installed (apt-get install ccache)" >&2; exit 1; }

work=$(mktemp -d)
server_pid=
cleanup() {
	[ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

(cd "$root" && go build -o "$work/bin/" ./cmd/kiln ./cmd/kiln-core)
kiln=$work/bin/kiln
"$kiln" server --store memory --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
	--data "${DATA:-$work/data}" --workers "$workers" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
	addr=$(sed -n 's/.*kiln server started.* grpc=\([^ ]*\).*/\1/p' "$work/server.log")
	[ -n "$addr" ] && break
	sleep 0.1
done
[ -n "$addr" ] || { cat "$work/server.log" >&2; exit 1; }

export KILN_SERVER=grpc://$addr KILN_FORCE_REMOTE=1 XDG_CACHE_HOME=$work/xdg-cache XDG_CONFIG_HOME=$work/xdg-config
export CCACHE_DIR=$work/ccache CCACHE_NOHASHDIR=1

# now prints seconds since the epoch with nanoseconds.
now() { date +%s.%N; }
# timed CMD...: runs CMD quietly (its output goes to $work/last.log) and prints seconds.
timed() {
	local s e
	s=$(now)
	"$@" >"$work/last.log" 2>&1 || { cat "$work/last.log" >&2; echo "cc-build.sh: failed: $*" >&2; exit 1; }
	e=$(now)
	echo "$e - $s" | bc -l
}
# median of its arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
# tree NAME: a fresh copy of the sources.
tree() { rm -rf "$work/$1"; cp -a "$src" "$work/$1"; echo "$work/$1"; }
rebuild() { make clean >/dev/null 2>&1; make -j"$jobs"; }

# busy: CPU seconds the whole machine has spent outside idle and iowait since boot.
busy() { awk '/^cpu / {printf "%.2f\n", ($2 + $3 + $4 + $7 + $8) / 100}' /proc/stat; }

declare -A fig
measure() { # measure NAME CMD...: REPS runs of CMD, median into fig[NAME]
	local name=$1 runs=() i
	shift
	for ((i = 0; i < reps; i++)); do runs+=("$("$@")"); done
	fig[$name]=$(median "${runs[@]}")
	printf '  %-12s %s\n' "$name" "${runs[*]}" >&2
}

echo "project $src, make -j$jobs, $reps runs each, server with $workers local worker slots" >&2
if [ -n "${COLD:-}" ]; then
	plain=$(tree plain)
	(cd "$plain" && env CC=gcc ./configure >/dev/null)
	k=$(tree kiln)
	(cd "$k" && env CC="$kiln cc gcc" ./configure >/dev/null && KILN_INSTANCE=first rebuild >/dev/null)
	lw=() lc=() cw=() cc=()
	for ((i = 0; i < reps; i++)); do
		b=$(busy)
		lw+=("$(cd "$plain" && timed rebuild)")
		lc+=("$(echo "$(busy) - $b" | bc -l)")
		b=$(busy)
		cw+=("$(cd "$k" && KILN_INSTANCE=cold-$RANDOM$RANDOM timed rebuild)")
		cc+=("$(echo "$(busy) - $b" | bc -l)")
		printf '  run %d: local %.2f s (%.1f CPU-s), kiln cold %.2f s (%.1f CPU-s)\n' "$i" "${lw[i]}" "${lc[i]}" "${cw[i]}" "${cc[i]}" >&2
	done
	l=$(median "${lw[@]}") c=$(median "${cw[@]}") lcpu=$(median "${lc[@]}") ccpu=$(median "${cc[@]}")
	printf '\nmedians of %d: local %.2f s, %.1f CPU-s; kiln cold %.2f s = %.2fx, %.1f CPU-s = %.2fx\n' "$reps" \
		"$l" "$lcpu" "$c" "$(echo "$c / $l" | bc -l)" "$ccpu" "$(echo "$ccpu / $lcpu" | bc -l)"
	exit 0
fi
plain=$(tree plain)
cd "$plain"
measure configure-plain timed env CC=gcc ./configure
measure local timed rebuild

k=$(tree kiln)
cd "$k"
measure configure-kiln timed env CC="$kiln cc gcc" ./configure
"$kiln" stats --zero
fig[first]=$(KILN_INSTANCE=first timed rebuild)
printf '  %-12s %s\n' first "${fig[first]}" >&2
cold_run() { KILN_INSTANCE=cold-$RANDOM$RANDOM timed rebuild; }
measure cold cold_run
warm_run() { KILN_INSTANCE=first timed rebuild; }
measure warm warm_run
"$kiln" stats >"$work/kiln-stats.txt"

c=$(tree ccache)
cd "$c"
timed env CC="ccache gcc" ./configure >/dev/null
ccache -z >/dev/null
timed rebuild >/dev/null # fills the cache
measure ccache-warm timed rebuild
ccache -s >"$work/ccache-stats.txt"

ratio() { echo "scale=2; $1 / $2" | bc -l; }
printf '\n%-30s %8s %8s\n' "build of $(basename "$src"), -j$jobs" seconds "vs local"
printf '%-30s %8.2f %8s\n' "local (gcc)" "${fig[local]}" 1.00
printf '%-30s %8.2f %8.2f\n' "kiln first (toolchain upload)" "${fig[first]}" "$(ratio "${fig[first]}" "${fig[local]}")"
printf '%-30s %8.2f %8.2f\n' "kiln cold (remote, all misses)" "${fig[cold]}" "$(ratio "${fig[cold]}" "${fig[local]}")"
printf '%-30s %8.2f %8.2f\n' "kiln warm (all hits)" "${fig[warm]}" "$(ratio "${fig[warm]}" "${fig[local]}")"
printf '%-30s %8.2f %8.2f\n' "ccache warm (all hits)" "${fig[ccache-warm]}" "$(ratio "${fig[ccache-warm]}" "${fig[local]}")"
printf 'kiln warm / ccache warm: %s\n' "$(ratio "${fig[warm]}" "${fig[ccache-warm]}")"
printf 'configure: plain %.2f s, through kiln cc %.2f s (%+.1f%%)\n' "${fig[configure-plain]}" "${fig[configure-kiln]}" \
	"$(echo "100 * (${fig[configure-kiln]} - ${fig[configure-plain]}) / ${fig[configure-plain]}" | bc -l)"
echo
echo "kiln stats over the kiln builds:"
grep -E '^(requests|cache hits|cache misses|cache hit rate|remote compiles|local compiles|  |fallbacks)' "$work/kiln-stats.txt" | sed 's/^/  /'
echo "ccache: $(grep -E 'Hits:' "$work/ccache-stats.txt" | head -1 | tr -s ' ')"
