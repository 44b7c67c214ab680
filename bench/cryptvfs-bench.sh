#!/bin/sh
# Plain SQLite vs cryptvfs vs Debian's SQLCipher on the DESIGN.md section 7
# mailbox workload, in one run (issue 3). Not a test.
#
#   bench/cryptvfs-bench.sh [ROUNDS]      (from the top of the tree)
#
# Builds bench/cryptvfs-bench.c twice in a temp dir (never in the tree):
# against libsqlite3 + src/cryptvfs, and against libsqlcipher (both export
# the sqlite3_* names, so they cannot share a binary). Then runs every
# engine/cache/page-size row ROUNDS times (default 5), interleaved, and
# prints the fastest of each phase in ms (the least disturbed by whatever
# else the machine runs) with its ratio to plain SQLite at the same cache
# and page size. Needs cc, libsqlite3-dev, libsodium-dev and
# libsqlcipher-dev. CVFS_BENCH_SCALE (percent, default 100) shrinks the
# workload; CVFS_BENCH_TUNED_KIB (default 16384) is the tuned page cache.
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
# The library's sources in DIR: every cvfs-*.c but the test programs.
cvfs_sources() {
	ls "$1"/cvfs-*.c | grep -v '/cvfs-interop-'
}
# shellcheck disable=SC2046
cc $cflags -I"$top/src/cryptvfs" -o "$work/bench" \
	"$top/bench/cryptvfs-bench.c" $(cvfs_sources "$top/src/cryptvfs") \
	$(pkg-config --cflags --libs sqlite3 libsodium)
if [ -n "$baseline" ]; then
	mkdir "$work/base"
	git -C "$top" archive "$baseline" src/cryptvfs | tar -x -C "$work/base"
	# shellcheck disable=SC2046
	cc $cflags -I"$work/base/src/cryptvfs" -o "$work/bench-base" \
		"$top/bench/cryptvfs-bench.c" \
		$(cvfs_sources "$work/base/src/cryptvfs") \
		$(pkg-config --cflags --libs sqlite3 libsodium)
fi
cc $cflags -DBENCH_SQLCIPHER -o "$work/bench-sqlcipher" \
	"$top/bench/cryptvfs-bench.c" $(pkg-config --cflags --libs sqlcipher)

# engine cache_kib page_size (0 = the engine's default)
rows="plain 0 0
cryptvfs 0 0
sqlcipher 0 0
plain $tuned 0
cryptvfs $tuned 0
sqlcipher $tuned 4096
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
	"sqlcipher $(pkg-config --modversion sqlcipher) (SQLite" \
	"$(sed -n 's/^#define SQLITE_VERSION *"\(.*\)"/\1/p' /usr/include/sqlcipher/sqlite3.h))"
echo "rounds $rounds, scale $scale%, tuned cache $tuned KiB"
[ -z "$baseline" ] ||
	echo "cryptvfs@base: src/cryptvfs of $baseline ($(git -C "$top" rev-parse --short "$baseline"))"

: > "$work/results"
i=0
while [ "$i" -lt "$rounds" ]; do
	echo "$rows" | while read -r engine cache page; do
		bin="$work/bench"
		[ "$engine" = sqlcipher ] && bin="$work/bench-sqlcipher"
		if [ "$engine" = cryptvfs@base ]; then
			"$work/bench-base" cryptvfs "$work" "$cache" "$page" \
				"$scale" | sed 's/^cryptvfs /cryptvfs@base /'
		else
			"$bin" "$engine" "$work" "$cache" "$page" "$scale"
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
$1 == "aead" { vals["enc"] = vals["enc"] " " $2; vals["dec"] = vals["dec"] " " $3; next }
{
	key = $1 " " $2 " " $3
	for (p = 4; p <= 8; p++)
		vals[key, p] = vals[key, p] " " $p
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
		printf "%-13s %6s %6s |", f[1], f[2] == 0 ? "2MB" : f[2] / 1024 "MB", \
		       f[3] == 0 ? (f[1] == "sqlcipher" ? "1K" : "4K") : f[3] / 1024 "K"
		for (p = 4; p <= 8; p++) {
			m = best(key SUBSEP p, 1)
			printf " %7.0f (%4.2fx)", m, m / best(base SUBSEP p, 1)
		}
		printf "\n"
		mb = body[key]
	}
	enc = best("enc", -1); dec = best("dec", -1)
	printf "libsodium chacha20poly1305-ietf, 4 KiB pages: encrypt %d MB/s, verify+decrypt %d MB/s\n", enc, dec
	printf "point reads returned %.1f MB of bodies: decrypting them alone takes >= %.0f ms\n", mb, mb / dec * 1000
}' "$work/results"
