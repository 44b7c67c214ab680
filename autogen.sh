#!/bin/sh
# Regenerates configure and the Makefile.in files (needs dovecot-dev for dovecot.m4).
set -e
cd "$(dirname "$0")"
mkdir -p m4
autoreconf -fi
