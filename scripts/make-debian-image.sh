#!/usr/bin/env bash
# Makes the Docker image debian:12 that the Dockerfiles start FROM, with no image registry:
# a minimal Debian 12 root filesystem made by debootstrap from a Debian package mirror,
# imported into the Docker daemon that DOCKER_HOST names (the default one otherwise).
# For sites without an image registry (air-gapped), and for the container test.
# Usage: scripts/make-debian-image.sh [MIRROR]   (root; debootstrap's default mirror when
# none is given; a site's own mirror, e.g. http://debian.example.org/debian, otherwise)
# Does nothing when the daemon already has debian:12.
set -euo pipefail
mirror="${1:-}"
if docker image inspect debian:12 >/dev/null 2>&1; then
  echo "make-debian-image: the daemon already has debian:12"
  exit 0
fi
for tool in debootstrap docker; do
  command -v "$tool" >/dev/null || { echo "make-debian-image: $tool is not installed" >&2; exit 1; }
done
rootfs=$(mktemp -d /tmp/enhance-debian12.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
# minbase: essential packages and apt, as the registry's debian:12 has.
# A second try after a failed download: the mirror may have been busy.
for attempt in 1 2; do
  if debootstrap --variant=minbase bookworm "$rootfs" ${mirror:+"$mirror"} >"$rootfs.log" 2>&1; then
    break
  fi
  tail -n 20 "$rootfs.log" >&2
  if [[ $attempt == 2 ]]; then
    rm -f "$rootfs.log"
    echo "make-debian-image: debootstrap failed twice (see above)" >&2
    exit 1
  fi
  echo "make-debian-image: debootstrap failed; trying again" >&2
  rm -rf "$rootfs" && mkdir -p "$rootfs"
done
rm -f "$rootfs.log"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" --numeric-owner -c . |
  docker import --change 'CMD ["bash"]' --message "debootstrap --variant=minbase bookworm" - debian:12
echo "make-debian-image: imported debian:12"
