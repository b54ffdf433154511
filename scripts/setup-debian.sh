#!/usr/bin/env bash
# Install every system package hermetic and its tests need on a Debian host,
# and enable Debian's source archive (trixie) so the pinned OpenSSL tarball can
# be fetched by hash with `apt-get source --download-only`.
# Idempotent; run as root (or with sudo available).
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# deb-src for the releases whose source packages carry the pinned OpenSSL
# tarballs (trixie: 3.5, bookworm: 3.0, bullseye: 1.1.1w): derived from the
# host's own sources file so that no archive host is named here.
src=/etc/apt/sources.list.d/debian.sources
dst=/etc/apt/sources.list.d/hermetic-openssl-src.sources
suites="trixie bookworm bullseye"
if [ -f "$src" ] && ! grep -qs "^Suites: $suites\$" "$dst"; then
  # first stanza only (the main archive, not -security)
  awk 'BEGIN{RS=""; ORS="\n\n"} NR==1' "$src" \
    | sed -e 's/^Types:.*/Types: deb-src/' -e "s/^Suites:.*/Suites: $suites/" \
    | $SUDO tee "$dst" >/dev/null
  $SUDO rm -f /etc/apt/sources.list.d/hermetic-trixie-src.sources  # what earlier versions of this script made
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# disorderfs (FUSE) and libfaketime let `hermetic verify` vary directory order
# and the wall clock; git gives source_date_epoch = "git" its commit time.
$SUDO apt-get install -y -q --no-install-recommends \
  bubblewrap gpgv gcc g++ make perl binutils dpkg-dev ca-certificates \
  python3-venv python3-dev python3-pip gnupg file \
  disorderfs libfaketime git openssl libssl-dev \
  qemu-user libc6-arm64-cross musl graphviz chromium
# libssl-dev: the third-party test proves the host's OpenSSL headers stay invisible to a build;
# qemu-user + libc6-arm64-cross: the aarch64 build's test program runs under
# qemu-aarch64 with the cross glibc as its sysroot; musl: auditwheel checks the
# musllinux wheel against a real musl libc.so (tests/test_platforms.py); graphviz:
# `hermetic graph --format svg|png` draws with its dot; chromium: tests/test_report.py
# renders the build's page headless and takes its screenshot

# nginx for the remote-cache tests (WebDAV PUT is in Debian's nginx) and
# PostgreSQL for BuildGrid's scheduler (remote execution). Tests and
# scripts/remote-cluster start their own servers on 127.0.0.1; the packages
# must not start the system services, so service starts are refused while
# they are installed.
if ! command -v nginx >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
    made_policy=1
  fi
  $SUDO apt-get install -y -q --no-install-recommends nginx postgresql
  if [ "$made_policy" = 1 ]; then $SUDO rm -f "$policy"; fi
fi
