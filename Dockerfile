# Orthanc with the Enhance plugin on Debian 12 (CPU). Build: docker-compose build
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
      -DENHANCE_BUILD_MODEL_TOOLS=OFF \
 && cmake --build /build \
 && install -D /build/plugin/libOrthancEnhance.so /usr/share/orthanc/plugins-enhance/libOrthancEnhance.so \
 && mkdir -p /usr/share/orthanc-enhance /var/lib/orthanc-enhance/models \
 && cp -r /src/models /usr/share/orthanc-enhance/models \
 && rm -rf /build /usr/share/orthanc-enhance/models/tools

# Orthanc reads every *.json file of the folder.
COPY orthanc-config/docker.json /etc/orthanc-enhance/orthanc.json
EXPOSE 8042 4242
VOLUME ["/var/lib/orthanc/db", "/var/lib/orthanc-enhance/models"]
HEALTHCHECK --interval=30s --timeout=5s --retries=3 \
  CMD curl -sf -u "admin:${ENHANCE_ADMIN_PASSWORD}" http://127.0.0.1:8042/enhance/system >/dev/null || exit 1
CMD ["Orthanc", "/etc/orthanc-enhance/"]
