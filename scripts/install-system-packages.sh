#!/usr/bin/env bash
# Install the Debian packages the test suite runs for real, if any is missing.
set -euo pipefail
needed=()
command -v prometheus >/dev/null || needed+=(prometheus)
command -v promtool >/dev/null || needed+=(prometheus)
command -v prometheus-alertmanager >/dev/null || needed+=(prometheus-alertmanager)
command -v amtool >/dev/null || needed+=(prometheus-alertmanager)
command -v chromium >/dev/null || needed+=(chromium)
# The image test (tests/test_image.py): podman builds and runs the Dockerfile; runc because
# crun refuses hybrid cgroups; mmdebstrap makes the base image (no registry is reachable).
command -v podman >/dev/null || needed+=(podman)
command -v buildah >/dev/null || needed+=(buildah)
command -v runc >/dev/null || needed+=(runc)
command -v mmdebstrap >/dev/null || needed+=(mmdebstrap)
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
# Another apt (a parallel setup, unattended upgrades) may hold one of apt's locks: wait for
# it (up to 10 minutes) instead of failing. DPkg::Lock::Timeout covers only dpkg's lock, not
# the package lists' lock that `apt-get update` takes, hence the loop.
apt_get() {
    local output
    for _ in $(seq 120); do
        if output=$($sudo apt-get -o DPkg::Lock::Timeout=600 "$@" 2>&1); then
            return 0
        fi
        if ! grep -q "Could not get lock" <<<"$output"; then
            echo "$output" >&2
            return 1
        fi
        sleep 5
    done
    echo "$output" >&2
    return 1
}
echo "Installing Debian packages: $packages"
export DEBIAN_FRONTEND=noninteractive
apt_get update -qq
# shellcheck disable=SC2086
apt_get install -y -qq --no-install-recommends $packages
