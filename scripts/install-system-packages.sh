#!/usr/bin/env bash
# Install the Debian packages the test suite runs for real, if any is missing.
set -euo pipefail
needed=()
command -v prometheus >/dev/null || needed+=(prometheus)
command -v promtool >/dev/null || needed+=(prometheus)
command -v prometheus-alertmanager >/dev/null || needed+=(prometheus-alertmanager)
command -v amtool >/dev/null || needed+=(prometheus-alertmanager)
command -v chromium >/dev/null || needed+=(chromium)
if [ ${#needed[@]} -eq 0 ]; then
    exit 0
fi
packages=$(printf '%s\n' "${needed[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null; then
    sudo="sudo"
else
    echo "Missing Debian packages: $packages- install them as root: apt-get install $packages" >&2
    exit 1
fi
echo "Installing Debian packages: $packages"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $packages >/dev/null
