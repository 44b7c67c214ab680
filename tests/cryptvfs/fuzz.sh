#!/bin/sh
# Copyright (c) dovecot-launchpad authors; see debian/copyright.
#
# Builds src/cryptvfs/fuzz-page.c with clang -fsanitize=fuzzer,address,
# undefined and runs it briefly (TAP; run by `make check` in
# src/cryptvfs). A missing clang or libFuzzer runtime FAILS the test:
# on Debian 12 install clang and libclang-rt-14-dev.
set -u

srcdir=${CVFS_SRCDIR:?run through make check}
builddir=${CVFS_BUILDDIR:?run through make check}
runs=${CVFS_FUZZ_RUNS:-20000}
clang=${CVFS_CLANG:-clang}
bin=$builddir/fuzz-page
n=0

work=$(mktemp -d "${TMPDIR:-/tmp}/cvfs-fuzz-XXXXXX") || { echo "Bail out! mktemp"; exit 1; }
trap 'rm -rf "$work"' EXIT INT TERM

command -v "$clang" >/dev/null 2>&1 ||
	{ echo "Bail out! $clang not found (Debian: clang, libclang-rt-14-dev)"; exit 1; }
# shellcheck disable=SC2086
if ! "$clang" -g -O1 -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=undefined -I"$srcdir" ${CVFS_SQLITE_CFLAGS:-} \
    ${CVFS_SODIUM_CFLAGS:-} ${CVFS_CIPHER_CFLAGS:-} -o "$bin" \
    "$srcdir/fuzz-page.c" "$srcdir/cvfs-cipher.c" "$srcdir/cvfs-db.c" \
    "$srcdir/cvfs-file.c" "$srcdir/cvfs-kdf.c" "$srcdir/cvfs-legacy.c" \
    "$srcdir/cvfs-page.c" "$srcdir/cvfs-shm.c" "$srcdir/cvfs-vfs.c" \
    "$srcdir/cvfs-wal.c" \
    ${CVFS_SQLITE_LIBS:--lsqlite3} ${CVFS_SODIUM_LIBS:--lsodium} \
    ${CVFS_CIPHER_LIBS:-} \
    >"$work/cc.log" 2>&1; then
	sed 's/^/# /' "$work/cc.log"
	echo "Bail out! cannot build the libFuzzer target: is the runtime installed (Debian: libclang-rt-14-dev)?"
	exit 1
fi
n=$((n + 1)); echo "ok $n - fuzz-page built with -fsanitize=fuzzer,address,undefined"

mkdir "$work/corpus"
if TMPDIR=$work "$bin" -seed=1 -runs="$runs" -max_len=9000 \
    -artifact_prefix="$builddir/fuzz-" "$work/corpus" >"$work/run.log" 2>&1; then
	n=$((n + 1)); echo "ok $n - fuzz-page: $runs runs, no crash"
	grep -E '^#[0-9]+.*DONE' "$work/run.log" | sed 's/^/# /'
	echo "1..$n"
	exit 0
fi
tail -n 40 "$work/run.log" | sed 's/^/# /'
n=$((n + 1)); echo "not ok $n - fuzz-page: $runs runs, no crash"
echo "1..$n"
exit 1
