# Orthanc with the Enhance plugin on Debian 12 (CPU). Build: docker-compose build
# SPDX-License-Identifier: GPL-3.0-or-later
# Two stages: the plugin is compiled in the first; the image is the second, with Orthanc,
# the shared libraries the plugin links and the shipped models, and no compiler or header.

FROM debian:12 AS build
# The build packages of scripts/packages.txt (one list, not two copies): every line not
# marked test-only.
COPY scripts/packages.txt /tmp/packages.txt
RUN echo 'Acquire::Retries "3";' > /etc/apt/apt.conf.d/80retries \
 && apt-get update \
 && sed -e '/#[[:space:]]*test-only/d' -e 's/#.*//' -e '/^[[:space:]]*$/d' /tmp/packages.txt \
    | xargs apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/*
COPY . /src
RUN cmake -S /src -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DENHANCE_BUILD_TESTS=OFF \
      -DENHANCE_BUILD_MODEL_TOOLS=OFF \
 && cmake --build /build \
 && install -D -m 644 /build/plugin/libOrthancEnhance.so /out/libOrthancEnhance.so \
 && /src/scripts/runtime-packages.sh /out/libOrthancEnhance.so > /out/runtime-packages.txt \
 && sed -n 's/^\([a-z0-9.+-]*\)[[:space:]]*#[[:space:]]*runtime.*/\1/p' /src/scripts/packages.txt \
    >> /out/runtime-packages.txt \
 && cp -r /src/models /out/models && rm -rf /out/models/tools

FROM debian:12
COPY --from=build /out/runtime-packages.txt /usr/share/orthanc-enhance/runtime-packages.txt
RUN echo 'Acquire::Retries "3";' > /etc/apt/apt.conf.d/80retries \
 && apt-get update \
 && xargs apt-get install -y --no-install-recommends < /usr/share/orthanc-enhance/runtime-packages.txt \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/orthanc/db /var/lib/orthanc-enhance/models
COPY --from=build /out/libOrthancEnhance.so /usr/share/orthanc/plugins-enhance/libOrthancEnhance.so
COPY --from=build /out/models /usr/share/orthanc-enhance/models
# Orthanc reads every *.json file of the folder.
COPY orthanc-config/docker.json /etc/orthanc-enhance/orthanc.json
COPY docker/entrypoint.sh /usr/local/bin/orthanc-enhance
COPY docker/healthcheck.sh /usr/local/bin/orthanc-enhance-health
EXPOSE 8042 4242
VOLUME ["/var/lib/orthanc/db", "/var/lib/orthanc-enhance/models"]
HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD ["/usr/local/bin/orthanc-enhance-health"]
ENTRYPOINT ["/usr/local/bin/orthanc-enhance"]
