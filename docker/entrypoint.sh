#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# The image's entry point: refuses to start Orthanc with a password missing, then runs it
# as the container's first process (it gets docker stop's SIGTERM and saves its jobs).
# Orthanc replaces an undefined ${VARIABLE} of its configuration by an empty string, which
# for RegisteredUsers would mean an empty password on a port open to the network.
set -eu
config=/etc/orthanc-enhance
if [ -z "${ENHANCE_ADMIN_PASSWORD:-}" ]; then
  echo "orthanc-enhance: ENHANCE_ADMIN_PASSWORD is not set: set the password of the" \
       "Orthanc user \"admin\" (docker-compose: an .env file beside docker-compose.yml)" >&2
  exit 64
fi
if grep -qs '\${ENHANCE_POSTGRES_PASSWORD}' "$config"/*.json &&
   [ -z "${ENHANCE_POSTGRES_PASSWORD:-}" ]; then
  echo "orthanc-enhance: ENHANCE_POSTGRES_PASSWORD is not set, and a file of $config" \
       "uses it for the PostgreSQL index" >&2
  exit 64
fi
exec Orthanc "$@" "$config/"
