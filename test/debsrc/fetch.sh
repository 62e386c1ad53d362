#!/usr/bin/env bash
# fetch.sh PACKAGE VERSION DEST: unpack Debian source package PACKAGE at VERSION into
# DEST/PACKAGE (skipped when DEST/PACKAGE already exists). The machine's apt sources are
# deb-only; this adds deb-src entries mirroring each deb entry (the same URIs, suites and
# keys) and runs apt-get update, once. Needs root for that step.
set -euo pipefail
pkg=$1 version=$2 dest=$3
if [ -d "$dest/$pkg" ]; then
	exit 0
fi
mkdir -p "$dest"
srcs=/etc/apt/sources.list.d/kiln-deb-src.sources
if ! apt-cache showsrc "$pkg" 2>/dev/null | grep -q "^Version: $version\$"; then
	if [ ! -e "$srcs" ]; then
		for f in /etc/apt/sources.list.d/*.sources; do
			[ "$f" = "$srcs" ] || sed 's/^Types: deb$/Types: deb-src/' "$f"
			echo
		done >"$srcs"
		if [ -f /etc/apt/sources.list ]; then
			sed -n 's/^deb /deb-src /p' /etc/apt/sources.list >/etc/apt/sources.list.d/kiln-deb-src.list
		fi
	fi
	apt-get update -qq
fi
work=$(mktemp -d "$dest/.fetch-XXXXXX")
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get source -qq "$pkg=$version" >/dev/null 2>&1 || { cd "$work" && apt-get source "$pkg=$version"; exit 1; })
dir=$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -1)
mv "$dir" "$dest/$pkg"
