#!/usr/bin/env bash
# The demo: installs what is missing, builds, starts Debian's Orthanc with the plugin on
# loopback, sends a synthetic low-dose CT series over DICOM C-STORE, waits for the
# enhanced series and keeps Orthanc running until Ctrl-C.
#
# Environment: ENHANCE_HTTP_PORT (8042), ENHANCE_DICOM_PORT (4242),
#              ENHANCE_DEMO_DIR (a new temporary folder), ENHANCE_DEMO_SLICES (32),
#              ENHANCE_DEMO_TIMEOUT (seconds to wait for the result, 300).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${ENHANCE_BUILD_DIR:-$root/build}"
http_port="${ENHANCE_HTTP_PORT:-8042}"
dicom_port="${ENHANCE_DICOM_PORT:-4242}"
slices="${ENHANCE_DEMO_SLICES:-32}"
timeout="${ENHANCE_DEMO_TIMEOUT:-300}"
workdir="${ENHANCE_DEMO_DIR:-$(mktemp -d -t orthanc-enhance-demo-XXXXXX)}"
url="http://127.0.0.1:$http_port"

"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"

for port in "$http_port" "$dicom_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "demo: port $port is already in use; set ENHANCE_HTTP_PORT / ENHANCE_DICOM_PORT" >&2
    exit 1
  fi
done

mkdir -p "$workdir/storage"
sed -e "s|@HTTP_PORT@|$http_port|" -e "s|@DICOM_PORT@|$dicom_port|" \
    -e "s|@STORAGE@|$workdir/storage|" -e "s|@PLUGIN@|$build/plugin/libOrthancEnhance.so|" \
    -e "s|@MODELS@|$root/models|" \
    "$root/orthanc-config/orthanc.json" > "$workdir/orthanc.json"

echo "demo: starting Orthanc (log: $workdir/orthanc.log)"
Orthanc "$workdir/orthanc.json" >"$workdir/orthanc.log" 2>&1 &
orthanc_pid=$!
stop() {
  if kill -0 "$orthanc_pid" 2>/dev/null; then
    echo "demo: stopping Orthanc"
    kill "$orthanc_pid" 2>/dev/null || true
    wait "$orthanc_pid" 2>/dev/null || true
  fi
}
trap stop EXIT
trap 'exit 130' INT TERM

for _ in $(seq 1 150); do
  curl -sf "$url/system" >/dev/null && break
  kill -0 "$orthanc_pid" 2>/dev/null || { cat "$workdir/orthanc.log" >&2; exit 1; }
  sleep 0.2
done
curl -sf "$url/enhance/system" >/dev/null || { echo "demo: the plugin did not load" >&2; cat "$workdir/orthanc.log" >&2; exit 1; }

echo "demo: generating a $slices-slice 512x512 low-dose CT phantom"
"$build/tools/enhance-make-phantom" --out "$workdir/ct" --slices "$slices" --noise 30
echo "demo: sending it with storescu to ENHANCE@127.0.0.1:$dicom_port"
storescu -aet DEMO-CT -aec ENHANCE 127.0.0.1 "$dicom_port" "$workdir"/ct/*.dcm

source_series=$(curl -sf "$url/series" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0])')
study=$(curl -sf "$url/series/$source_series" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ParentStudy"])')
echo "demo: waiting for the enhanced series (up to $timeout s)"
derived=""
deadline=$((SECONDS + timeout))
while ((SECONDS < deadline)); do
  derived=$(curl -sf "$url/studies/$study" | python3 -c '
import json, sys
study = json.load(sys.stdin)
print(" ".join(s for s in study["Series"] if s != sys.argv[1]))' "$source_series")
  if [[ -n "$derived" ]]; then
    count=$(curl -sf "$url/series/$derived" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["Instances"]))')
    [[ "$count" == "$slices" ]] && break
  fi
  kill -0 "$orthanc_pid" 2>/dev/null || { cat "$workdir/orthanc.log" >&2; exit 1; }
  sleep 1
done
if [[ -z "$derived" || "${count:-0}" != "$slices" ]]; then
  echo "demo: no enhanced series after $timeout s; see $workdir/orthanc.log" >&2
  grep -i enhance "$workdir/orthanc.log" >&2 || true
  exit 1
fi

description=$(curl -sf "$url/series/$derived" | python3 -c 'import json,sys; print(json.load(sys.stdin)["MainDicomTags"].get("SeriesDescription",""))')
grep "Enhance: series $source_series" "$workdir/orthanc.log" | tail -n 1 | sed 's/^.*Enhance: /demo: /' || true
cat <<EOT

  Source series:    $source_series
  Enhanced series:  $derived  ($description)
  Orthanc Explorer: $url/app/explorer.html#series?uuid=$derived
  Study:            $url/app/explorer.html#study?uuid=$study
  Plugin status:    $url/enhance/system

Orthanc keeps running; press Ctrl-C to stop it.
EOT
wait "$orthanc_pid"
