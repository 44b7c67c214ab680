#!/bin/sh
# Copyright (c) dovecot-launchpad authors; see debian/copyright.
#
# cryptvfs <-> SQLite3MultipleCiphers, both directions (issue 3). Run by
# `make check` in src/cryptvfs (TAP). Fetches the npm package
# better-sqlite3-multiple-ciphers, whose deps/sqlite3/ holds the sqlite3mc
# amalgamation, builds tests/cryptvfs/mc-tool.c against it and checks:
# our files (raw key, passphrase, un-checkpointed WAL, export) open in
# sqlite3mc, and sqlite3mc's files (and its appends to ours) open here;
# both write one file at the same time, get SIGKILLed, and each recovers
# every acknowledged commit (cvfs-interop-concurrent); a legacy sqlite3mc
# WAL whose frames name copies far more than 256 frames back is recovered
# whole.
# The package and the built tool are cached in the build dir
# (src/cryptvfs/interop-cache), never in the source tree. Without npm or
# the registry this test FAILS: it never passes by skipping.
set -u

spec=${CVFS_MC_NPM_SPEC:-better-sqlite3-multiple-ciphers@12.11.1}
builddir=${CVFS_BUILDDIR:?run through make check}
top_srcdir=${CVFS_TOP_SRCDIR:?run through make check}
cache=$builddir/interop-cache
helper=$builddir/cvfs-interop-helper
concurrent=$builddir/cvfs-interop-concurrent
mc_src=$top_srcdir/tests/cryptvfs/mc-tool.c
n=0
failed=0

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; }
bail() { echo "Bail out! $1"; exit 1; }
# check DESCRIPTION COMMAND...: one TAP line, output shown on failure.
check() {
	desc=$1
	shift
	if "$@" >"$work/log" 2>&1; then
		ok "$desc"
	else
		not_ok "$desc"
		sed 's/^/# /' "$work/log"
	fi
}
nonempty() { test -s "$1"; }
# equals WANT COMMAND...: COMMAND's stdout is exactly the line WANT.
equals() {
	want=$1
	shift
	got=$("$@") || return 1
	[ "$got" = "$want" ] || { echo "got '$got', want '$want'"; return 1; }
}

work=$(mktemp -d "${TMPDIR:-/tmp}/cvfs-interop-XXXXXX") || bail "mktemp"
trap 'rm -rf "$work"' EXIT INT TERM
mkdir -p "$cache" || bail "cannot create $cache"
[ -x "$helper" ] || bail "$helper not built (make check builds it)"
[ -x "$concurrent" ] || bail "$concurrent not built (make check builds it)"

tarball=$(ls "$cache"/better-sqlite3-multiple-ciphers-*.tgz 2>/dev/null | head -n 1)
if [ -z "$tarball" ]; then
	command -v npm >/dev/null 2>&1 ||
		bail "npm not found (Debian package npm): this test needs it"
	if ! (cd "$cache" && timeout 600 npm pack --silent "$spec") \
	    >"$work/npm.log" 2>&1; then
		sed 's/^/# /' "$work/npm.log"
		bail "npm pack $spec failed: the npm registry must be reachable"
	fi
	tarball=$(ls "$cache"/better-sqlite3-multiple-ciphers-*.tgz 2>/dev/null | head -n 1)
fi
[ -n "$tarball" ] || bail "no package tarball in $cache"
ok "npm package $(basename "$tarball")"

sum=$(cat "$mc_src" | cksum | cut -d ' ' -f 1)
mc=$cache/mc-tool-$(basename "$tarball" .tgz)-$sum
if [ ! -x "$mc" ]; then
	tar -xzf "$tarball" -C "$work" package/deps/sqlite3 ||
		bail "cannot unpack $tarball"
	amal=$work/package/deps/sqlite3
	${CVFS_MC_CC:-cc} -O1 -w -I"$amal" -o "$mc.tmp" "$mc_src" \
	    "$amal/sqlite3.c" -lpthread -ldl -lm >"$work/cc.log" 2>&1 || {
		sed 's/^/# /' "$work/cc.log"
		bail "cannot build mc-tool against the sqlite3mc amalgamation"
	}
	mv "$mc.tmp" "$mc"
fi
ok "mc-tool built against the sqlite3mc amalgamation"

raw="raw:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
raw2="raw:f0e1d2c3b4a5968778695a4b3c2d1e0ff0e1d2c3b4a5968778695a4b3c2d1e0f"
pass="pass:correct horse battery staple"

# ours -> sqlite3mc
check "cryptvfs raw-key file read by sqlite3mc raw:<hex>" \
	sh -c "'$helper' write '$work/a.db' '$raw' 50 && '$mc' read '$work/a.db' '$raw' 50"
check "cryptvfs passphrase file read by sqlite3mc PRAGMA key" \
	sh -c "'$helper' write '$work/b.db' '$pass' 40 && '$mc' read '$work/b.db' '$pass' 40"
"$helper" write "$work/c.db" "$raw2" 30 crash >"$work/log" 2>&1
check "cryptvfs left an un-checkpointed WAL" nonempty "$work/c.db-wal"
check "sqlite3mc recovers and reads our un-checkpointed WAL" \
	"$mc" read "$work/c.db" "$raw2" 30
check "cryptvfs export read by sqlite3mc with the passphrase" \
	sh -c "'$helper' export '$work/b.db' '$pass' '$work/g.db' && '$mc' read '$work/g.db' '$pass' 40"
check "sqlite3mc rejects a wrong key on our file" \
	sh -c "! '$mc' read '$work/a.db' '$raw2' 50"

# sqlite3mc -> ours
check "sqlite3mc appends to our file, cryptvfs reads all rows" \
	sh -c "'$mc' write '$work/a.db' '$raw' 25 && '$helper' read '$work/a.db' '$raw' 75"
check "sqlite3mc passphrase file read by cryptvfs" \
	sh -c "'$mc' write '$work/e.db' '$pass' 60 && '$helper' read '$work/e.db' '$pass' 60"
"$mc" write "$work/f.db" "$raw" 35 crash >"$work/log" 2>&1
check "sqlite3mc left an un-checkpointed WAL" nonempty "$work/f.db-wal"
check "cryptvfs recovers and reads sqlite3mc's un-checkpointed WAL" \
	"$helper" read "$work/f.db" "$raw" 35
check "cryptvfs rejects a wrong key on sqlite3mc's file" \
	sh -c "! '$helper' read '$work/e.db' '$raw' 60"

# both at once: the -shm must tell each writer the checksums on disk
mkdir -p "$work/concurrent" || bail "mkdir"
check "cryptvfs and sqlite3mc write one file at once, SIGKILLed, both recover every acknowledged commit" \
	"$concurrent" "$helper" "$mc" "$work/concurrent" "$raw" 20240611 60
sed -n 's/^/# /p' "$work/log"

# sqlite3mc's legacy WAL, with copies of pages > 256 frames back
"$mc" legacywal "$work/l.db" "$raw" 150 >"$work/log" 2>&1
check "sqlite3mc left a legacy WAL" nonempty "$work/l.db-wal"
check "cryptvfs recovers every frame of the legacy WAL, latest versions win" \
	equals "150|150" "$helper" query "$work/l.db" "$raw" \
	"SELECT count(*), (SELECT v FROM k) FROM t"
check "the recovered legacy WAL passes integrity_check" \
	equals "ok" "$helper" query "$work/l.db" "$raw" "PRAGMA integrity_check"

echo "1..$n"
[ "$failed" -eq 0 ]
