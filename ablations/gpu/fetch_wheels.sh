#!/usr/bin/env bash
# Download, on the developer machine, the wheels the GPU machine lacks into .whl/ (ignored by git, carried by the
# device call; ablations/gpu/run.sh installs them there), then measure what the device call sends: the working tree
# plus .whl must stay under 64 MiB.
#
#   bash ablations/gpu/fetch_wheels.sh
#
# The GPU machine's image (Python 3.12, torch 2.11, numpy, matplotlib, pandas, scikit-learn, pyyaml, pillow,
# opencv-python-headless, psutil, requests, httpx, nvidia-ml-py, onnx, onnxruntime, sympy, ...) lacks what this list
# names. ultralytics 8.4.190 needs ultralytics-thop, ultralytics-platform (which needs httpx: there) and polars
# (read in the trainer's save_model). ultralytics accepts polars>=0.20.0; of the wheels tried, 0.20.31 is the smallest
# (29 MB; 1.0: 31 MB, 1.33: 40 MB, 2.1 with its runtime: 55 MB). yolo-necks needs faster-coco-eval (COCO AP by
# object size after every run; a CPython 3.12 build: the image's Python). onnxslim is only for step (c), ONNX export.
# The project itself is not a wheel: run.sh puts the carried tree's plugins/ on PYTHONPATH.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

WHEELS=(
    ultralytics==8.4.190
    ultralytics-thop==2.2.3
    ultralytics-platform==0.1.99
    polars==0.20.31
    faster-coco-eval==1.8.0
    onnxslim==0.1.98
)
LIMIT=$((64 * 1024 * 1024))

grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || git check-ignore -q .whl/x.whl || {
    echo "fetch_wheels.sh: .whl/ is not ignored by git; add '/.whl/' to .git/info/exclude first" >&2; exit 2; }
mkdir -p .whl
for spec in "${WHEELS[@]}"; do   # one version of each package: drop other versions of ours
    name="$(echo "${spec%%==*}" | tr 'A-Z-' 'a-z_')"
    version="${spec##*==}"
    for w in .whl/"$name"-*.whl; do
        [ -e "$w" ] || continue
        case "$(basename "$w")" in "$name-$version-"*) ;; *) echo "removing $w"; rm -f "$w" ;; esac
    done
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"

echo "wheels in .whl/:"
ls -l .whl/*.whl | awk '{printf "  %10d  %s\n", $5, $9}'
echo "what each needs (all there on the GPU machine, or in this list):"
for w in .whl/*.whl; do
    needs="$(unzip -p "$w" '*.dist-info/METADATA' | grep '^Requires-Dist' | grep -v 'extra ==' |
             sed 's/Requires-Dist: //' | tr '\n' ';' || true)"
    echo "  $(basename "$w" | cut -d- -f1): ${needs:-nothing}"
done

wheels=$(du -cb .whl/*.whl | tail -1 | cut -f1)
tree=$( { git ls-files -z; git ls-files -z --others --exclude-standard; } | xargs -0 du -cb 2>/dev/null |
        awk '$2 == "total" {s += $1} END {print s + 0}')
total=$((wheels + tree))
awk -v w="$wheels" -v t="$tree" -v s="$total" 'BEGIN {
    printf "size: wheels %.1f MiB + working tree %.1f MiB = %.1f MiB of the device call'"'"'s 64 MiB\n",
           w / 1048576, t / 1048576, s / 1048576 }'
[ "$total" -lt "$LIMIT" ] || { echo "fetch_wheels.sh: over the device call's 64 MiB limit" >&2; exit 1; }
