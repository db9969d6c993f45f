# Orthanc with the Enhance plugin on Debian 12 (CPU). Build: docker compose build
# SPDX-License-Identifier: GPL-3.0-or-later
FROM debian:12

# The same package list as scripts/install-deps.sh (one list, not two copies), less the
# packages marked test-only.
COPY scripts/packages.txt /tmp/packages.txt
RUN apt-get update \
 && sed -e '/#[[:space:]]*test-only/d' -e 's/#.*//' -e '/^[[:space:]]*$/d' /tmp/packages.txt \
    | xargs apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/*

COPY . /src
RUN cmake -S /src -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DENHANCE_BUILD_TESTS=OFF \
 && cmake --build /build \
 && install -D /build/plugin/libOrthancEnhance.so /usr/share/orthanc/plugins-enhance/libOrthancEnhance.so \
 && rm -rf /build

COPY orthanc-config/docker.json /etc/orthanc-enhance/orthanc.json
EXPOSE 8042 4242
VOLUME ["/var/lib/orthanc/db"]
CMD ["Orthanc", "/etc/orthanc-enhance/orthanc.json"]
