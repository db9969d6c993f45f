#!/usr/bin/env bash
# The demo: installs what is missing, builds, starts Debian's Orthanc with the plugin on
# loopback, sends a synthetic low-dose CT series and a real T1-weighted head MR series
# (mricron-data, converted to DICOM) over DICOM C-STORE, waits for the derived series of
# the demo's rules (CT: denoised; MR: x2 super-resolution, and a synthetic CT by the
# diffusion model with its uncertainty map) and keeps
# Orthanc running until Ctrl-C.
#
# Environment: ENHANCE_HTTP_PORT (8042), ENHANCE_DICOM_PORT (4242),
#              ENHANCE_DEMO_DIR (a new temporary folder), ENHANCE_DEMO_SLICES (32 CT slices),
#              ENHANCE_DEMO_MR (a NIfTI T1 head volume, /usr/share/mricron/templates/ch2.nii.gz),
#              ENHANCE_DEMO_MR_SLICES (24), ENHANCE_DEMO_TIMEOUT (seconds to wait, 300).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${ENHANCE_BUILD_DIR:-$root/build}"
http_port="${ENHANCE_HTTP_PORT:-8042}"
dicom_port="${ENHANCE_DICOM_PORT:-4242}"
slices="${ENHANCE_DEMO_SLICES:-32}"
mr_slices="${ENHANCE_DEMO_MR_SLICES:-24}"
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

# Loading and warming up every model can take minutes on a busy machine (5 min at most).
for _ in $(seq 1 1500); do
  curl -sf "$url/system" >/dev/null && break
  kill -0 "$orthanc_pid" 2>/dev/null || { cat "$workdir/orthanc.log" >&2; exit 1; }
  sleep 0.2
done
curl -sf "$url/enhance/system" >/dev/null || { echo "demo: the plugin did not load" >&2; cat "$workdir/orthanc.log" >&2; exit 1; }

if [[ -x "$build/models/enhance-simulate-ct" ]]; then
  # A phantom acquired by a simulated scanner at a quarter of the full dose: the noise
  # texture of a real low-dose CT, and what ct-denoise and its domain check were trained on.
  echo "demo: simulating a $slices-slice 512x512 low-dose CT acquisition of a phantom"
  "$build/models/enhance-simulate-ct" --dicom "$workdir/ct" --slices "$slices"
else
  echo "demo: generating a $slices-slice 512x512 CT phantom with added noise"
  "$build/tools/enhance-make-phantom" --out "$workdir/ct" --slices "$slices" --noise 30
fi
echo "demo: sending it with storescu to ENHANCE@127.0.0.1:$dicom_port"
storescu -aet DEMO-CT -aec ENHANCE 127.0.0.1 "$dicom_port" "$workdir"/ct/*.dcm

# The MR: axial slices of a real T1-weighted head (mricron-data), as a scanner would send.
mr_source="${ENHANCE_DEMO_MR:-/usr/share/mricron/templates/ch2.nii.gz}"
echo "demo: converting $mr_slices slices of $mr_source to an MR series"
/usr/bin/python3 "$root/tools/nifti_to_dicom_mr.py" "$mr_source" "$workdir/mr" --count "$mr_slices"
echo "demo: sending it with storescu to ENHANCE@127.0.0.1:$dicom_port"
storescu -aet DEMO-MR -aec ENHANCE 127.0.0.1 "$dicom_port" "$workdir"/mr/*.dcm

series_of_modality() {
  curl -sf "$url/series?expand" | python3 -c '
import json, sys
for s in json.load(sys.stdin):
    if s["MainDicomTags"].get("Modality") == sys.argv[1]:
        print(s["ID"]); break' "$1"
}
ct_series=$(series_of_modality CT)
mr_series=$(series_of_modality MR)

# Prints the series derived from $1 (same study, other series) once $2 of them are
# complete (as many instances as the source), else nothing.
complete_derived() {
  curl -sf "$url/series/$1" >"$workdir/source.json" || return 0
  local study
  study=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ParentStudy"])' "$workdir/source.json")
  curl -sf "$url/studies/$study/series" | python3 -c '
import json, sys
source = json.load(open(sys.argv[1]))
derived = [s for s in json.load(sys.stdin) if s["ID"] != source["ID"]]
done = [s for s in derived if len(s["Instances"]) == len(source["Instances"])]
if len(done) >= int(sys.argv[2]):
    print(" ".join(s["ID"] for s in done))' "$workdir/source.json" "$2"
}

echo "demo: waiting for the derived series: CT denoised; MR super-resolution, synthetic CT and its uncertainty map (up to $timeout s)"
ct_derived=""
mr_derived=""
deadline=$((SECONDS + timeout))
while ((SECONDS < deadline)); do
  [[ -n "$ct_derived" ]] || ct_derived=$(complete_derived "$ct_series" 1)
  [[ -n "$mr_derived" ]] || mr_derived=$(complete_derived "$mr_series" 3)
  [[ -n "$ct_derived" && -n "$mr_derived" ]] && break
  kill -0 "$orthanc_pid" 2>/dev/null || { cat "$workdir/orthanc.log" >&2; exit 1; }
  sleep 1
done
if [[ -z "$ct_derived" || -z "$mr_derived" ]]; then
  echo "demo: the derived series did not all arrive within $timeout s; see $workdir/orthanc.log" >&2
  grep -i enhance "$workdir/orthanc.log" >&2 || true
  exit 1
fi

for source in "$ct_series" "$mr_series"; do
  grep "Enhance: series $source" "$workdir/orthanc.log" | tail -n 2 | sed 's/^.*Enhance: /demo: /' || true
done
describe() {
  curl -sf "$url/series/$1" | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(s["MainDicomTags"].get("Modality", ""), "-", s["MainDicomTags"].get("SeriesDescription", ""))'
}
echo
for source in "$ct_series" "$mr_series"; do
  echo "  Source series:    $source  ($(describe "$source"))"
  for derived in $( [[ "$source" == "$ct_series" ]] && echo "$ct_derived" || echo "$mr_derived" ); do
    echo "    Derived series: $derived  ($(describe "$derived"))"
    # A series outside its model's training domain says so in every instance.
    warning=$(curl -sf "$url/series/$derived" | python3 -c '
import json, sys
print(json.load(sys.stdin)["Instances"][0])' | xargs -I{} curl -sf "$url/instances/{}/simplified-tags" |
      python3 -c 'import json, sys; print(json.load(sys.stdin).get("ImageComments", ""))')
    if [[ "$warning" == WARNING:* ]]; then echo "      $warning"; fi
    echo "      Orthanc Explorer: $url/app/explorer.html#series?uuid=$derived"
  done
done
cat <<EOT

  Plugin status:    $url/enhance/system
  Jobs:             $url/jobs

Orthanc keeps running; press Ctrl-C to stop it.
EOT
wait "$orthanc_pid"
