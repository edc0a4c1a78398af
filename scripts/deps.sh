#!/bin/sh
# Installs the Debian packages kanal needs to build and test, but only when something is
# missing: pkg-config names for the libraries, command names for the tools. Runs apt-get
# as root, or through sudo when not root. Safe to run again; does nothing when all is there.
set -eu

need_pc="libzmq jansson yaml-0.1 sqlite3 sqlcipher libnats cunit libcurl libxml-2.0 libical libmicrohttpd openssl libsystemd gnutls xmlsec1-openssl"
# radicale: the real CalDAV server the calendar connector's tests and the demo run against;
# promtool checks /metrics; chromium and chromedriver run the dashboard test in a browser.
# scdoc builds the man pages; dh (debhelper) and dpkg-buildpackage let test_packaging build
# the Debian packages.
need_cmd="pkg-config cc make scdoc dh clang-format radicale promtool chromium chromedriver nats-server"

# Debian package for each pkg-config name or command.
pkg_for() {
	case "$1" in
	libzmq) echo libzmq3-dev ;;
	jansson) echo libjansson-dev ;;
	yaml-0.1) echo libyaml-dev ;;
	sqlite3) echo libsqlite3-dev ;;
	sqlcipher) echo libsqlcipher-dev ;; # the journal's encryption at rest (key_file)
	libnats) echo libnats-dev ;;
	cunit) echo libcunit1-dev ;;
	libcurl) echo libcurl4-openssl-dev ;;
	libxml-2.0) echo libxml2-dev ;;
	libical) echo libical-dev ;;
	libmicrohttpd) echo libmicrohttpd-dev ;;
	openssl) echo libssl-dev ;;
	libsystemd) echo libsystemd-dev ;;
	gnutls) echo libgnutls28-dev ;;
	xmlsec1-openssl) echo libxmlsec1-dev ;;
	pkg-config) echo pkg-config ;;
	cc | make) echo build-essential ;;
	promtool) echo prometheus ;;
	dh) echo debhelper ;;
	chromedriver) echo chromium-driver ;;
	*) echo "$1" ;;
	esac
}

missing=""
# jq (routes' transforms) has no pkg-config file on Debian 12: look for its header.
[ -f /usr/include/jq.h ] || missing="$missing libjq-dev"
for c in $need_cmd; do
	command -v "$c" >/dev/null 2>&1 || missing="$missing $(pkg_for "$c")"
done
for p in $need_pc; do
	if ! command -v pkg-config >/dev/null 2>&1 || ! pkg-config --exists "$p"; then
		missing="$missing $(pkg_for "$p")"
	fi
done
for extra in ${KANAL_EXTRA_PACKAGES:-}; do
	dpkg -s "$extra" >/dev/null 2>&1 || missing="$missing $extra"
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
echo "deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >&2
