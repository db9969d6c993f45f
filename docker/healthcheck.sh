#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# The image's health check: the Enhance plugin answers on Orthanc's HTTP port, as the
# configuration in /etc/orthanc-enhance sets it (a site file may move it from 8042).
set -eu
port=$(sed -n 's/^[[:space:]]*"HttpPort"[[:space:]]*:[[:space:]]*\([0-9][0-9]*\).*/\1/p' \
         /etc/orthanc-enhance/*.json | tail -n 1)
exec curl -sf -o /dev/null --max-time 4 -u "admin:${ENHANCE_ADMIN_PASSWORD}" \
     "http://127.0.0.1:${port:-8042}/enhance/system"
