#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang (AddressSanitizer and UBSan),
# makes their seed corpora from real files and runs each target for a bounded time.
# Exits non-zero when a target crashes, leaks, hits undefined behaviour or hangs; the
# input that did it is left in $fuzz/artifacts/<target>/.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 60)
#        scripts/fuzz.sh --build-only
# Environment: ENHANCE_FUZZ_BUILD_DIR (default: build-fuzz next to build/),
#              ENHANCE_FUZZ_TARGETS (default: "dicom_series manifest configuration"),
#              ENHANCE_FUZZ_RSS_MB (default 2048), ENHANCE_JOBS (default: all cores).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz="${ENHANCE_FUZZ_BUILD_DIR:-${ENHANCE_BUILD_DIR:-$root/build}-fuzz}"
targets="${ENHANCE_FUZZ_TARGETS:-dicom_series manifest configuration}"
rss_mb="${ENHANCE_FUZZ_RSS_MB:-2048}"
jobs="${ENHANCE_JOBS:-$(nproc)}"
seconds=60
build_only=0
case "${1:-}" in
  --build-only) build_only=1 ;;
  "") ;;
  *[!0-9]* | 0)
    echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] | --build-only" >&2
    exit 2
    ;;
  *) seconds="$1" ;;
esac

cxx="${ENHANCE_FUZZ_CXX:-clang++-14}"
if ! command -v "$cxx" >/dev/null; then
  echo "fuzz: $cxx not found; install clang-14 and libclang-rt-14-dev (scripts/packages.txt)" >&2
  exit 2
fi

start=$(date +%s)
cmake -S "$root/tests/fuzz" -B "$fuzz" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
nice cmake --build "$fuzz" --parallel "$jobs"
echo "fuzz: build $(($(date +%s) - start)) s"
((build_only)) && exit 0

# Seed corpora, made afresh from real files on every run (nothing binary is committed).
seeds="$fuzz/seeds"
rm -rf "$seeds"
mkdir -p "$seeds/dicom_series" "$seeds/manifest" "$seeds/configuration"
pydicom_files=/usr/lib/python3/dist-packages/pydicom/data/test_files
# CT, MR (implicit, explicit and big endian, padded, truncated), JPEG baseline and
# extended, JPEG-LS, JPEG 2000 (the FrameDecoder path), RLE, deflate, colour, multi-frame,
# files without meta header, an SR and an RT plan (not images).
for name in CT_small MR_small MR_small_implicit MR_small_bigendian MR_small_expb \
  MR_small_padded MR_truncated MR_small_RLE MR_small_jpeg_ls_lossless MR_small_jp2klossless \
  JPEG-lossy JPGExtended image_dfl ExplVR_BigEnd ExplVR_LitEndNoMeta no_meta_group_length \
  SC_rgb_small_odd SC_rgb_rle_2frame rtdose_1frame liver_1frame test-SR rtplan_truncated; do
  if [[ -f "$pydicom_files/$name.dcm" ]]; then
    cp "$pydicom_files/$name.dcm" "$seeds/dicom_series/pydicom-$name.dcm"
  fi
done
if [[ ! -f "$seeds/dicom_series/pydicom-CT_small.dcm" ]]; then
  echo "fuzz: pydicom's test files are missing (python3-pydicom); seeding with the phantom only" >&2
fi
# A small phantom CT series from the project's own writer: each slice alone, and the
# whole series as one input (instances joined by the separator fuzz_dicom_series splits on).
"$fuzz/enhance-make-phantom" --out "$fuzz/phantom" --rows 16 --columns 16 --slices 3 \
  --noise 10 >/dev/null
separator='<<ENHANCE-NEXT-INSTANCE>>'
phantom=("$fuzz"/phantom/CT000[1-3].dcm)
cp "${phantom[0]}" "$seeds/dicom_series/phantom-slice.dcm"
{
  cat "${phantom[0]}"
  printf '%s' "$separator"
  cat "${phantom[1]}"
  printf '%s' "$separator"
  cat "${phantom[2]}"
} >"$seeds/dicom_series/phantom-series"
# Inputs that once got through the reader with values no float or geometry holds
# (docs/reliability.md), made from the phantom with DCMTK's dcmodify.
if command -v dcmodify >/dev/null; then
  edits=("(0028,1053)=1e300" "(0020,0032)=0\\0\\1e308" "(0028,0030)=0.7\\1e308"
    "(0020,0037)=1e200\\0\\0\\0\\1e200\\0")
  for k in "${!edits[@]}"; do
    cp "${phantom[1]}" "$seeds/dicom_series/regression-$k.dcm"
    dcmodify -q -nb -m "${edits[$k]}" "$seeds/dicom_series/regression-$k.dcm"
  done
fi
cp "$root"/tests/fuzz/seeds/dicom_series/* "$seeds/dicom_series/" 2>/dev/null || true
for manifest in "$root"/models/*/manifest.json; do
  cp "$manifest" "$seeds/manifest/$(basename "$(dirname "$manifest")").json"
done
cp "$root"/tests/fuzz/seeds/manifest/* "$seeds/manifest/"
cp "$root"/orthanc-config/*.json "$seeds/configuration/"
cp "$root"/tests/fuzz/seeds/configuration/* "$seeds/configuration/"
# A SeriesDescription of 15000 characters against ".*": the standard library's regex
# recursion once ended the process on such values.
{
  printf '{"Enhance": {"Rules": [{"Task": "denoise", "Model": "m", "SeriesDescription": "^a.*b"}]},'
  printf ' "FuzzSeries": {"MainDicomTags": {"Modality": "CT", "SeriesDescription": "'
  head -c 15000 /dev/zero | tr '\0' a
  printf '"}}}'
} >"$seeds/configuration/long-description.json"

declare -A dictionary=([dicom_series]=dicom.dict [manifest]=json.dict [configuration]=json.dict)
declare -A max_len=([dicom_series]=65536 [manifest]=8192 [configuration]=16384)
# DCMTK allocates the declared length of an element (up to 4 GiB) before it finds that the
# input is shorter and fails cleanly. Outside the sanitizer that memory is only reserved;
# under ASan each such allocation costs a fill of its shadow memory, so allocations above
# what a series of four 8192 x 8192 slices needs fail at once (DCMTK then reports "out of
# memory" and the reader rejects the file).
declare -A allocation_mb=([dicom_series]=1200 [manifest]="$rss_mb" [configuration]="$rss_mb")
asan_options="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
failed=()
for target in $targets; do
  corpus="$fuzz/corpus/$target"
  artifacts="$fuzz/artifacts/$target"
  log="$fuzz/logs/$target.log"
  mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
  echo "fuzz: fuzz_$target for $seconds s (log: $log)"
  # New inputs go to the first folder, which persists between runs; the seeds are read too.
  if ASAN_OPTIONS="$asan_options:max_allocation_size_mb=${allocation_mb[$target]}" \
    nice "$fuzz/fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb="$rss_mb" \
    -malloc_limit_mb="$rss_mb" -max_len="${max_len[$target]}" \
    -dict="$root/tests/fuzz/${dictionary[$target]}" -artifact_prefix="$artifacts/" \
    -print_final_stats=1 "$corpus" "$seeds/$target" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    echo "fuzz: fuzz_$target passed: $runs executions, $speed/s, corpus $(ls "$corpus" | wc -l) inputs"
  else
    failed+=("$target")
    echo "fuzz: fuzz_$target FAILED; the input is in $artifacts/, the end of the log follows" >&2
    tail -n 60 "$log" >&2
  fi
done

if ((${#failed[@]} > 0)); then
  echo "fuzz: failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: all targets passed ($(($(date +%s) - start)) s)"
