#!/bin/sh
# Installs everything the build, the demo and the tests need, from Debian 12's
# archive (idempotent; needs root). CI and a fresh machine start here.
set -eu
export DEBIAN_FRONTEND=noninteractive
# Debian's dovecot-core postinst would start the system Dovecot; nothing here
# needs it running (the tests start their own, on loopback ports).
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
	autoconf automake libtool pkg-config make gcc clang libclang-rt-14-dev \
	dovecot-core dovecot-dev dovecot-imapd dovecot-pop3d dovecot-lmtpd \
	dovecot-sieve dovecot-managesieved dovecot-submissiond \
	libcurl4-openssl-dev libjansson-dev libsodium-dev libtdb-dev \
	libsqlite3-dev libssl-dev sqlite3 tdb-tools libmicrohttpd-dev \
	python3 python3-pytest python3-pytest-timeout util-linux ca-certificates \
	strace \
	chromium chromium-driver python3-selenium \
	build-essential debhelper dh-autoreconf dpkg-dev fakeroot lintian git \
	>/dev/null
# The cryptvfs interop test builds SQLite3MultipleCiphers from its npm package.
command -v npm >/dev/null 2>&1 || apt-get install -y -qq nodejs npm >/dev/null
