#!/bin/sh
# Plain SQLite vs cryptvfs vs SQLite3MultipleCiphers' chacha20 (and
# Debian's SQLCipher) on the doc/DESIGN.md section 7 mailbox workload, in one
# run (issues 3 and 15). Not a test.
#
#   bench/cryptvfs-bench.sh [ROUNDS]      (from the top of the tree)
#
# Builds bench/cryptvfs-bench.c in a temp dir (never in the tree): against
# libsqlite3 + src/cryptvfs (with OpenSSL's EVP when pkg-config finds
# libcrypto >= 3, as configure does; CVFS_BENCH_OPENSSL=no for libsodium
# only), against the sqlite3mc amalgamation and against libsqlcipher
# (all export the sqlite3_* names, so they cannot share a binary). Then
# runs every engine/cache/page-size row ROUNDS times (default 5),
# interleaved, and prints the fastest of each phase in ms (the least
# disturbed by whatever else the machine runs) with its ratio to plain
# SQLite at the same cache and page size. The "floor" rows are plain
# SQLite plus what the pages cryptvfs transformed in that phase cost in a
# loop on their own ("crypt" lines of the program); cryptvfs's ratio to
# the floor and sqlite3mc's ratio to cryptvfs follow the table.
#
# sqlite3mc: the npm package better-sqlite3-multiple-ciphers ships its C
# amalgamation (deps/sqlite3/sqlite3.c). The script runs `npm pack
# better-sqlite3-multiple-ciphers` (Debian package npm; or set
# CVFS_BENCH_SQLITE3MC_TGZ to a tarball fetched before) and compiles it
# with -O2 into CVFS_BENCH_CACHE (default ~/.cache/dlp-cryptvfs-bench),
# never into the tree. CVFS_BENCH_SQLITE3MC=no skips it.
#
# Needs cc, libsqlite3-dev, libsodium-dev, libssl-dev; libsqlcipher-dev
# for the SQLCipher rows (CVFS_BENCH_SQLCIPHER=no skips them).
# CVFS_BENCH_SCALE (percent, default 100) shrinks the workload;
# CVFS_BENCH_TUNED_KIB (default 16384) is the tuned page cache;
# CVFS_BENCH_PAGES=yes adds the 8/16/64 KiB page-size rows;
# CVFS_BENCH_RESULTS=FILE keeps the raw result lines.
# CVFS_BENCH_BASELINE=<git revision> adds rows "cryptvfs@base" built from
# that revision's src/cryptvfs (git archive), to measure a change of
# cryptvfs against what it replaced in the same run.
set -eu

rounds=${1:-5}
scale=${CVFS_BENCH_SCALE:-100}
tuned=${CVFS_BENCH_TUNED_KIB:-16384}
top=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/cryptvfs-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

cflags="-O2 -g -Wall"
baseline=${CVFS_BENCH_BASELINE:-}
with_mc=${CVFS_BENCH_SQLITE3MC:-yes}
with_sqlcipher=${CVFS_BENCH_SQLCIPHER:-yes}
cache=${CVFS_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dlp-cryptvfs-bench}
cipher_flags=
cipher_libs=
if [ "${CVFS_BENCH_OPENSSL:-yes}" != no ] &&
    pkg-config --atleast-version=3.0 libcrypto; then
	cipher_flags="-DCVFS_HAVE_OPENSSL $(pkg-config --cflags libcrypto)"
	cipher_libs=$(pkg-config --libs libcrypto)
fi
# The library's sources in DIR: every cvfs-*.c but the test programs.
cvfs_sources() {
	ls "$1"/cvfs-*.c | grep -v '/cvfs-interop-'
}
# shellcheck disable=SC2046,SC2086
cc $cflags -DCVFS_BENCH_COUNTERS $cipher_flags -I"$top/src/cryptvfs" \
	-o "$work/bench" \
	"$top/bench/cryptvfs-bench.c" $(cvfs_sources "$top/src/cryptvfs") \
	$(pkg-config --cflags --libs sqlite3 libsodium) $cipher_libs -lpthread
if [ "$with_mc" != no ]; then
	mkdir -p "$cache"
	tgz=${CVFS_BENCH_SQLITE3MC_TGZ:-}
	if [ -z "$tgz" ]; then
		tgz=$(ls "$cache"/better-sqlite3-multiple-ciphers-*.tgz 2>/dev/null | tail -n 1)
		if [ -z "$tgz" ]; then
			echo "fetching sqlite3mc: npm pack better-sqlite3-multiple-ciphers into $cache" >&2
			(cd "$cache" && npm pack --silent better-sqlite3-multiple-ciphers >/dev/null)
			tgz=$(ls "$cache"/better-sqlite3-multiple-ciphers-*.tgz | tail -n 1)
		fi
	fi
	mc_obj=$cache/$(basename "$tgz" .tgz).o
	if [ ! -f "$mc_obj" ]; then
		echo "compiling the sqlite3mc amalgamation of $(basename "$tgz") (a minute or two)" >&2
		tar -xzf "$tgz" -C "$work" package/deps/sqlite3
		cc -O2 -w -I"$work/package/deps/sqlite3" -c -o "$mc_obj.tmp" \
			"$work/package/deps/sqlite3/sqlite3.c"
		mv "$mc_obj.tmp" "$mc_obj"
		cp "$work/package/deps/sqlite3/sqlite3.h" "$cache/$(basename "$tgz" .tgz).h"
	fi
	mkdir -p "$work/mcinc"
	cp "$cache/$(basename "$tgz" .tgz).h" "$work/mcinc/sqlite3.h"
	cc $cflags -DBENCH_SQLITE3MC -I"$work/mcinc" -o "$work/bench-mc" \
		"$top/bench/cryptvfs-bench.c" "$mc_obj" -lpthread -ldl -lm
	mc_version=$(basename "$tgz" .tgz | sed 's/^better-sqlite3-multiple-ciphers-//')
	mc_sqlite=$(sed -n 's/^#define SQLITE_VERSION *"\(.*\)"/\1/p' "$work/mcinc/sqlite3.h")
	mc_mc=$(sed -n 's/^#define SQLITE3MC_VERSION_STRING *"\(.*\)"/\1/p' "$work/mcinc/sqlite3.h")
fi
[ "$with_sqlcipher" = no ] || pkg-config --exists sqlcipher || with_sqlcipher=no
if [ -n "$baseline" ]; then
	mkdir "$work/base"
	git -C "$top" archive "$baseline" src/cryptvfs | tar -x -C "$work/base"
	# The baseline may predate the counters and the EVP path: it is
	# built without the counters, as its configure would have built it.
	# shellcheck disable=SC2046,SC2086
	cc $cflags -DBENCH_BASELINE $cipher_flags \
		-I"$work/base/src/cryptvfs" \
		-o "$work/bench-base" "$top/bench/cryptvfs-bench.c" \
		$(cvfs_sources "$work/base/src/cryptvfs") \
		$(pkg-config --cflags --libs sqlite3 libsodium) $cipher_libs \
		-lpthread
fi
[ "$with_sqlcipher" = no ] ||
	cc $cflags -DBENCH_SQLCIPHER -o "$work/bench-sqlcipher" \
		"$top/bench/cryptvfs-bench.c" $(pkg-config --cflags --libs sqlcipher)

# engine cache_kib page_size (0 = the engine's default)
rows="plain 0 0
cryptvfs 0 0"
[ "$with_mc" = no ] || rows="$rows
sqlite3mc 0 0"
[ "$with_sqlcipher" = no ] || rows="$rows
sqlcipher 0 0"
rows="$rows
plain $tuned 0
cryptvfs $tuned 0"
[ "$with_mc" = no ] || rows="$rows
sqlite3mc $tuned 0"
[ "$with_sqlcipher" = no ] || rows="$rows
sqlcipher $tuned 4096"
[ "${CVFS_BENCH_PAGES:-no}" = no ] || rows="$rows
plain $tuned 8192
cryptvfs $tuned 8192
plain $tuned 16384
cryptvfs $tuned 16384
plain $tuned 65536
cryptvfs $tuned 65536"
if [ -n "$baseline" ]; then
	rows="$rows
cryptvfs@base 0 0
cryptvfs@base $tuned 0"
fi

echo "machine: $(nproc) cores, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)"
echo "sqlite $(pkg-config --modversion sqlite3), libsodium $(pkg-config --modversion libsodium)," \
	"cryptvfs cipher: $("$work/bench" aead | cut -d ' ' -f 6)" \
	"${cipher_libs:+(OpenSSL $(pkg-config --modversion libcrypto))}"
[ "$with_mc" = no ] ||
	echo "sqlite3mc: better-sqlite3-multiple-ciphers $mc_version, $mc_mc (SQLite $mc_sqlite), cc -O2"
[ "$with_sqlcipher" = no ] ||
	echo "sqlcipher $(pkg-config --modversion sqlcipher) (SQLite" \
	"$(sed -n 's/^#define SQLITE_VERSION *"\(.*\)"/\1/p' /usr/include/sqlcipher/sqlite3.h))"
echo "rounds $rounds, scale $scale%, tuned cache $tuned KiB"
[ -z "$baseline" ] ||
	echo "cryptvfs@base: src/cryptvfs of $baseline ($(git -C "$top" rev-parse --short "$baseline"))"

: > "$work/results"
i=0
while [ "$i" -lt "$rounds" ]; do
	echo "$rows" | while read -r engine kib page; do
		bin="$work/bench"
		[ "$engine" = sqlcipher ] && bin="$work/bench-sqlcipher"
		[ "$engine" = sqlite3mc ] && bin="$work/bench-mc"
		if [ "$engine" = cryptvfs@base ]; then
			"$work/bench-base" cryptvfs "$work" "$kib" "$page" \
				"$scale" | grep -v '^crypt ' |
				sed 's/^cryptvfs /cryptvfs@base /'
		else
			"$bin" "$engine" "$work" "$kib" "$page" "$scale"
		fi >> "$work/results"
	done
	"$work/bench" aead >> "$work/results"
	i=$((i + 1))
done

awk -v rows="$rows" '
function best(key, sign,   n, v, i, b) {
	n = split(vals[key], v, " ")
	b = v[1] + 0
	for (i = 2; i <= n; i++)
		if (sign * (v[i] - b) < 0)
			b = v[i] + 0
	return b
}
function cell(m, base) {
	return sprintf(" %7.0f (%4.2fx)", m, m / base)
}
$1 == "pages" { next }
$1 == "aead" {
	for (p = 2; p <= 5; p++)
		vals["aead", p] = vals["aead", p] " " $p
	backend = $6
	next
}
{
	key = $1 " " $2 " " $3
	for (p = 4; p <= 8; p++)
		vals[key, p] = vals[key, p] " " $p
	if ($1 != "crypt")
		body[key] = $9
}
END {
	printf "%-13s %6s %6s | %14s %14s %14s %14s %14s\n", "engine", \
	       "cache", "page", "insert ms", "point read ms", "hdr scan ms", \
	       "flag upd ms", "total ms"
	n = split(rows, r, "\n")
	for (i = 1; i <= n; i++) {
		split(r[i], f, " ")
		key = f[1] " " f[2] " " f[3]
		base = "plain " f[2] " " (f[1] == "sqlcipher" && f[3] == 4096 ? 0 : f[3])
		cache = f[2] == 0 ? "2MB" : f[2] / 1024 "MB"
		page = f[3] == 0 ? (f[1] == "sqlcipher" ? "1K" : "4K") : f[3] / 1024 "K"
		printf "%-13s %6s %6s |", f[1], cache, page
		for (p = 4; p <= 8; p++)
			printf "%s", cell(best(key SUBSEP p, 1), best(base SUBSEP p, 1))
		printf "\n"
		if (f[1] != "cryptvfs")
			continue
		# The floor: plain SQLite plus the crypt of what cryptvfs
		# transformed, each at its fastest.
		ck = "crypt " f[2] " " f[3]
		printf "%-13s %6s %6s |", "floor", cache, page
		for (p = 4; p <= 8; p++) {
			fl[key, p] = best(base SUBSEP p, 1) + best(ck SUBSEP p, 1)
			printf "%s", cell(fl[key, p], best(base SUBSEP p, 1))
		}
		printf "\n"
		mb = body[key]
		done[key] = 1
	}
	printf "\ncryptvfs / floor (goal <= 1.15), sqlite3mc / cryptvfs (goal >= 1.5):\n"
	for (i = 1; i <= n; i++) {
		split(r[i], f, " ")
		key = f[1] " " f[2] " " f[3]
		if (!(key in done))
			continue
		mc = "sqlite3mc " f[2] " " f[3]
		printf "  cache %s, page %s:", f[2] == 0 ? "2MB" : f[2] / 1024 "MB", \
		       f[3] == 0 ? "4K" : f[3] / 1024 "K"
		for (p = 4; p <= 8; p++) {
			printf " %s %.2f", p == 4 ? "insert" : p == 5 ? "read" : \
			       p == 6 ? "scan" : p == 7 ? "update" : "total", \
			       best(key SUBSEP p, 1) / fl[key, p]
			if ((mc SUBSEP p) in vals)
				printf "/%.2f", best(mc SUBSEP p, 1) / best(key SUBSEP p, 1)
		}
		printf "\n"
	}
	printf "libsodium chacha20poly1305-ietf AEAD, 4 KiB: encrypt %d MB/s, verify+decrypt %d MB/s\n", \
	       best("aead" SUBSEP 2, -1), best("aead" SUBSEP 3, -1)
	printf "cryptvfs page transform (%s), 4 KiB: encrypt %d MB/s, verify+decrypt %d MB/s\n", \
	       backend, best("aead" SUBSEP 4, -1), best("aead" SUBSEP 5, -1)
	dec = best("aead" SUBSEP 5, -1)
	printf "point reads returned %.1f MB of bodies: decrypting them alone takes >= %.0f ms\n", mb, mb / dec * 1000
}' "$work/results"
# CVFS_BENCH_RESULTS=FILE keeps the raw lines (the table can be redone).
[ -z "${CVFS_BENCH_RESULTS:-}" ] || cp "$work/results" "$CVFS_BENCH_RESULTS"
