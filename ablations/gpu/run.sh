#!/usr/bin/env bash
# The GPU run of yolo-necks, in one script (see ablations/gpu/README.md for the device call and what comes back).
#
# Run from the repository root on the GPU machine:
#   bash ablations/gpu/run.sh [--deadline-s 560] [--levels 4,2] [--resume PATH] [--work DIR] [--out DIR]
# or on any machine, end to end on the CPU with tiny settings (a test of the suite runs this):
#   OUT=/tmp/out bash ablations/gpu/run.sh --dry-run
#
# Steps, in this order, each skipped when an earlier call already did it (state lives in the work folder, and in
# the archive it is packed into):
#   0. install the carried wheels (.whl/) unless ultralytics and yolo_necks already import; check nvidia-smi
#   a. the default sweep (ablations/default.yaml: 6 arms x 3 seeds, digits at 320 px, 30 epochs) once per packing
#      level (runs_per_device 4, then 2), each level its own sweep folder, with GPU busy % and memory sampled by
#      nvidia-smi every second; a later level starts only when the time left covers the earlier level's wall time
#   b. yolo-necks bench on CUDA (fp32 and fp16)
#   c. only when `yolo-necks ablate --help` knows speed.formats: a 1-seed, 1-epoch sweep timed in every export
#      format that works here (torch, onnx, and engine when TensorRT imports)
# Every step stops before the deadline (seconds after the start): a sweep is interrupted like Ctrl-C, which keeps
# every finished run, and everything measured so far is packed into OUT:
#   gpu-sweep.tar.gz (the work folder without weights or datasets; --resume continues from it), benchmark.md,
#   benchmark.csv (per packing level: wall time, runs, GPU busy %), bench.csv, bench.md, env.txt, run.log
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PY="${PYTHON:-python3}"

usage() {
    sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    cat <<'EOF'

options:
  --dry-run          the same steps on the CPU with tiny settings (device cpu, 1 epoch, 64 px, 16 train images,
                     2 arms x 1 seed, parallel=1; bench --quick at 64 px); installs nothing when yolo_necks
                     already imports
  --deadline-s N     seconds after the start by which OUT must be packed (default 560; dry run 1200)
  --levels L,L       packing levels (runs_per_device) in order (default 4,2)
  --resume PATH      continue from an earlier call: its gpu-sweep.tar.gz, or that archive unpacked (a results
                     folder, see README.md); used when the work folder is empty
  --work DIR         work folder (default /tmp/yolo-necks-gpu; dry run: OUT/../gpu-work)
  --out DIR          where the results go (default $OUT)
  -h, --help         show this help
EOF
}

die() { echo "run.sh: error: $*" >&2; exit 2; }

# ------------------------------------------------------------------------------------------------- arguments
DRY=0
DEADLINE=""
LEVELS_ARG="4,2"
RESUME=""
WORK=""
OUT_DIR="${OUT:-}"
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --deadline-s|--levels|--resume|--work|--out)
            [ $# -ge 2 ] || die "option $1 needs a value"
            case "$1" in
                --deadline-s) DEADLINE="$2" ;;
                --levels) LEVELS_ARG="$2" ;;
                --resume) RESUME="$2" ;;
                --work) WORK="$2" ;;
                --out) OUT_DIR="$2" ;;
            esac
            shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
    shift
done

[ -n "$OUT_DIR" ] || die "no output folder: set OUT or pass --out DIR"
if [ -z "$DEADLINE" ]; then
    if [ "$DRY" = 1 ]; then DEADLINE=1200; else DEADLINE=560; fi
fi
[[ "$DEADLINE" =~ ^[0-9]+$ ]] && [ "$DEADLINE" -ge 60 ] ||
    die "--deadline-s must be a whole number of seconds >= 60, got '$DEADLINE'"
[[ "$LEVELS_ARG" =~ ^[1-9][0-9]?(,[1-9][0-9]?)*$ ]] ||
    die "--levels must be runs_per_device values like 4,2, got '$LEVELS_ARG'"
IFS=',' read -r -a LEVELS <<<"$LEVELS_ARG"
if [ -n "$RESUME" ]; then
    [ -e "$RESUME" ] || die "--resume: no such file or folder '$RESUME'"
    RESUME="$(cd "$(dirname "$RESUME")" && pwd)/$(basename "$RESUME")"
fi
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
if [ -z "$WORK" ]; then
    if [ "$DRY" = 1 ]; then WORK="$(dirname "$OUT_DIR")/gpu-work"; else WORK=/tmp/yolo-necks-gpu; fi
fi
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
cd "$ROOT"

# What the later steps keep back for themselves from the time left before the deadline.
if [ "$DRY" = 1 ]; then
    PACK_RESERVE=5; BENCH_RESERVE=30; FORMATS_MIN=30
else
    PACK_RESERVE=25; BENCH_RESERVE=90; FORMATS_MIN=120
fi
left() { echo $((DEADLINE - SECONDS)); }

exec > >(tee -a "$OUT_DIR/run.log") 2>&1
TEE_PID=$!
log() { echo "[run.sh $(date -u +%H:%M:%S) +${SECONDS}s] $*"; }
step() { echo "$1: $2" >>"$WORK/steps.txt"; log "$1: $2"; }   # what each step did, for benchmark.md

# ------------------------------------------------------------------------------------------------- pack on exit
SAMPLER_PID=""
pack() {
    local rc=$? f
    set +e
    if [ -n "$SAMPLER_PID" ]; then kill "$SAMPLER_PID" 2>/dev/null; wait "$SAMPLER_PID" 2>/dev/null; fi
    log "packing into $OUT_DIR (exit status so far $rc)"
    "$PY" "$HERE/summarise.py" report "$WORK" --levels "$LEVELS_ARG" || log "summarise.py failed"
    for f in benchmark.md benchmark.csv env.txt; do [ -f "$WORK/$f" ] && cp "$WORK/$f" "$OUT_DIR/"; done
    for f in bench.csv bench.md; do [ -f "$WORK/bench/$f" ] && cp "$WORK/bench/$f" "$OUT_DIR/"; done
    local excludes=(--exclude=./datasets --exclude=.ablate.lock --exclude='*.pt' --exclude='*.onnx'
                    --exclude='*.engine' --exclude='*.torchscript' --exclude='*_openvino_model')
    tar -czf "$OUT_DIR/gpu-sweep.tar.gz" -C "$WORK" "${excludes[@]}" .
    if [ "$(stat -c %s "$OUT_DIR/gpu-sweep.tar.gz")" -gt $((15 * 1024 * 1024)) ]; then   # 16 MiB a file come back
        log "archive over 15 MiB: packing again without the runs' train.log files"
        tar -czf "$OUT_DIR/gpu-sweep.tar.gz" -C "$WORK" "${excludes[@]}" --exclude=train.log .
    fi
    log "done: $(ls "$OUT_DIR" | tr '\n' ' ')"
    exec 1>&- 2>&-
    timeout 5 tail --pid="$TEE_PID" -f /dev/null 2>/dev/null   # run.log complete before the script ends
    exit "$rc"
}
trap pack EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

log "start: dry run $DRY, deadline ${DEADLINE}s, levels $LEVELS_ARG, work $WORK, out $OUT_DIR"

# ------------------------------------------------------------------------------------------------- 0. set up
export YOLO_OFFLINE=1 PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export YOLO_NECKS_DATA_DIR="$WORK/datasets"
export YOLO_NECKS_AUTOLOAD=0   # as on the GPU machine, where the start-up hook is not on a site path

RESUMED=""
if [ -n "$RESUME" ]; then
    if [ -f "$WORK/segments.csv" ] || [ -f "$WORK/steps.txt" ]; then
        log "--resume: the work folder already holds a run (a warm machine); continuing from it instead"
    else
        if [ -d "$RESUME" ]; then cp -a "$RESUME"/. "$WORK"/; else tar -xzf "$RESUME" -C "$WORK"; fi
        log "--resume: continuing from $RESUME"
        RESUMED=" (resumed from $(basename "$RESUME"))"
    fi
fi
CALL="$(date -u +%Y%m%dT%H%M%SZ)"
echo "--- call $CALL: dry run $DRY, deadline ${DEADLINE}s$RESUMED" >>"$WORK/steps.txt"

importable() {
    "$PY" -c 'import importlib.util as u, sys
sys.exit(0 if u.find_spec("ultralytics") and u.find_spec("yolo_necks") else 1)'
}
if importable && command -v yolo-necks >/dev/null; then
    log "install: ultralytics and yolo_necks import already; nothing installed"
else
    shopt -s nullglob
    wheels=("$ROOT"/.whl/*.whl)
    shopt -u nullglob
    [ ${#wheels[@]} -gt 0 ] ||
        die "no wheels in .whl/: run ablations/gpu/fetch_wheels.sh on the developer machine and carry .whl"
    dup="$(for w in "${wheels[@]}"; do basename "$w" | cut -d- -f1 | tr 'A-Z-' 'a-z_'; done | sort | uniq -d)"
    [ -z "$dup" ] || die "two versions of $dup in .whl/: keep one"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "${wheels[@]}"
    # the project runs from this tree; the command is the console script pyproject.toml declares
    mkdir -p /tmp/site/bin
    printf '#!/bin/sh\nexec %s -c "import sys; from yolo_necks.cli import main; sys.exit(main())" "$@"\n' \
        "$(command -v "$PY")" >/tmp/site/bin/yolo-necks
    chmod +x /tmp/site/bin/yolo-necks
    export PYTHONPATH="$ROOT/plugins:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    export PATH="/tmp/site/bin:$PATH"
    "$PY" -c 'import ultralytics, yolo_necks' || die "ultralytics or yolo_necks does not import after the install"
    log "install: ${#wheels[@]} wheels into /tmp/site; yolo_necks from $ROOT/plugins"
fi

SMI=0
if [ "$DRY" = 1 ]; then
    if command -v nvidia-smi >/dev/null; then SMI=1; fi
else
    command -v nvidia-smi >/dev/null || die "nvidia-smi not found: this is not the GPU machine (use --dry-run)"
    nvidia-smi -L || die "nvidia-smi -L failed"
    SMI=1
    "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' || die "torch sees no CUDA device"
fi

{
    echo "# call $(date -u +%FT%TZ): dry run $DRY, deadline ${DEADLINE}s"
    if [ "$SMI" = 1 ]; then
        nvidia-smi -L
        nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv
    fi
    echo "cpus: $(nproc); memory: $(free -g 2>/dev/null | awk '/^Mem:/ {print $2 " GiB"}')"
    df -h /tmp /dev/shm 2>/dev/null | sed 's/^/df: /'
    "$PY" -c 'import sys, platform, importlib.metadata as md
print("python", platform.python_version(), sys.executable)
for name in ("torch", "torchvision", "numpy", "ultralytics", "ultralytics-thop", "polars", "opencv-python-headless",
             "opencv-python", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxslim", "tensorrt"):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        pass
import torch, yolo_necks
print("torch cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), "devices", torch.cuda.device_count())
print("yolo_necks", yolo_necks.__version__, yolo_necks.__file__)'
} >>"$WORK/env.txt" 2>&1
log "environment: $(grep -c . "$WORK/env.txt") lines in env.txt"

# ------------------------------------------------------------------------------------------------- a. the sweep
SPEC=ablations/default.yaml
if [ "$DRY" = 1 ]; then
    SETTINGS=(cpu=None device=cpu epochs=1 imgsz=64 batch=4 workers=0 arms=sppf,spp "seeds=[0]" parallel=1
              "data_params={'n_train': 16, 'n_val': 8, 'imgsz': 64}"
              "speed={'warmup': 1, 'repeats': 100, 'throughput_batch': 2, 'throughput_repeats': 2}")
else
    SETTINGS=(device=0)   # the spec's full sweep as it stands: 6 arms x 3 seeds, digits at 320 px, 30 epochs
fi

# GPU busy % and memory, about a line a second, while a stretch of a sweep runs. One nvidia-smi call per sample
# rather than its own loop (-l 1): each line is on disk at once, whatever stops the sampler.
start_sampler() {
    SAMPLER_PID=""
    [ "$SMI" = 1 ] || return 0
    while :; do
        nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits || true
        sleep 1
    done >"$1" 2>/dev/null &
    SAMPLER_PID=$!
}
stop_sampler() {
    [ -n "$SAMPLER_PID" ] || return 0
    kill "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    SAMPLER_PID=""
}
rows() { "$PY" "$HERE/summarise.py" rows "$1"; }   # rows of a results.csv (0 when there is none)

[ -f "$WORK/segments.csv" ] ||
    echo "level,call,started_at,wall_s,rows_before,rows_after,outcome,samples" >"$WORK/segments.csv"
mkdir -p "$WORK/gpu" "$WORK/sweeps"
earlier_done=1
prev_level=""
for L in "${LEVELS[@]}"; do
    name="gpu-rpd$L"
    dir="$WORK/sweeps/$name"
    if [ -f "$dir/.done" ]; then
        step "sweep $name" "done in an earlier call"; prev_level="$L"; continue
    fi
    if [ "$earlier_done" = 0 ]; then
        step "sweep $name" "not started: an earlier packing level is not finished"; continue
    fi
    before="$(rows "$dir/results.csv")"
    if [ -f "$WORK/bench/bench.csv" ]; then
        budget=$(( $(left) - PACK_RESERVE ))
    else
        budget=$(( $(left) - PACK_RESERVE - BENCH_RESERVE ))
    fi
    if [ -n "$prev_level" ] && [ "$before" = 0 ]; then   # "then 2 if time allows": a fresh level must fit
        need="$("$PY" "$HERE/summarise.py" level-wall "$WORK" "$prev_level")"
        if [ "$budget" -lt "$need" ]; then
            step "sweep $name" "not started: ${budget}s left for it, the rpd$prev_level level took ${need}s"
            earlier_done=0; continue
        fi
    fi
    if [ "$budget" -lt 30 ]; then
        step "sweep $name" "not started: ${budget}s left"; earlier_done=0; continue
    fi
    samples="gpu/$name-$CALL.csv"
    log "sweep $name: runs_per_device=$L, $before rows so far, ${budget}s before it is stopped"
    start_sampler "$WORK/$samples"
    t0=$SECONDS
    set +e
    timeout -s INT -k 30 "$budget" yolo-necks ablate "$SPEC" "name=$name" "project=$WORK/sweeps" \
        "runs_per_device=$L" "${SETTINGS[@]}"
    rc=$?
    set -e
    wall=$((SECONDS - t0))
    stop_sampler
    after="$(rows "$dir/results.csv")"
    case "$rc" in
        0) outcome=done; touch "$dir/.done" ;;
        124|137) outcome=deadline; earlier_done=0 ;;
        *) outcome="failed-rc$rc"; earlier_done=0 ;;
    esac
    [ "$SMI" = 1 ] || samples=""
    echo "$L,$CALL,$(date -u +%FT%TZ),$wall,$before,$after,$outcome,$samples" >>"$WORK/segments.csv"
    step "sweep $name" "$outcome after ${wall}s, rows $before -> $after"
    # the harness writes the summaries when interrupted while training, not while timing the arms
    if [ "$outcome" != done ] && [ "$dir/results.csv" -nt "$dir/summary.md" ] &&
        [ "$(left)" -gt $((PACK_RESERVE + 20)) ]; then
        timeout 60 yolo-necks report "$dir" >/dev/null 2>&1 || log "report of the partial sweep $name failed"
    fi
    prev_level="$L"
done

# ------------------------------------------------------------------------------------------------- b. bench
if [ -f "$WORK/bench/bench.csv" ]; then
    step bench "done in an earlier call"
else
    budget=$(( $(left) - PACK_RESERVE ))
    if [ "$budget" -lt 20 ]; then
        step bench "not started: ${budget}s left"
    else
        if [ "$DRY" = 1 ]; then
            BENCH=(--device cpu --quick --imgsz 64 --repeats 3 --warmup 1)
        else
            BENCH=(--device cuda)   # fp32 and fp16, both layouts, the default shapes and batches
        fi
        log "bench: ${BENCH[*]}, ${budget}s before it is stopped"
        set +e
        timeout -s INT -k 20 "$budget" yolo-necks bench "${BENCH[@]}" --out "$WORK/bench.partial"
        rc=$?
        set -e
        if [ "$rc" = 0 ] && [ -f "$WORK/bench.partial/bench.csv" ]; then
            rm -rf "$WORK/bench"
            mv "$WORK/bench.partial" "$WORK/bench"
            step bench "done (${BENCH[*]})"
        else
            rm -rf "$WORK/bench.partial"
            step bench "failed or stopped (exit $rc)"
        fi
    fi
fi

# ------------------------------------------------------------------------------------------------- c. formats
ablate_help="$(yolo-necks ablate --help 2>&1 || true)"
formats_re='(speed\.formats|'$'\n''[[:space:]]+formats[[:space:]])'   # the key, or its line under "speed.* keys"
if ! [[ "$ablate_help" =~ $formats_re ]]; then
    step formats "skipped: this yolo-necks has no speed.formats key"
elif [ -f "$WORK/sweeps/gpu-formats/.done" ]; then
    step formats "done in an earlier call"
elif [ $(( $(left) - PACK_RESERVE )) -lt "$FORMATS_MIN" ]; then
    step formats "not started: $(( $(left) - PACK_RESERVE ))s left"
else
    formats="torch,onnx"
    if "$PY" -c 'import tensorrt' 2>/dev/null; then
        formats="$formats,engine"
    else
        log "formats: TensorRT does not import here; no engine"
    fi
    FSET=("${SETTINGS[@]}")
    [ "$DRY" = 1 ] || FSET+=("runs_per_device=${LEVELS[0]}" "seeds=[0]" epochs=1)
    set +e
    timeout -s INT -k 30 $(( $(left) - PACK_RESERVE )) yolo-necks ablate "$SPEC" name=gpu-formats \
        "project=$WORK/sweeps" "${FSET[@]}" "speed.formats=[$formats]"
    rc=$?
    set -e
    if [ "$rc" = 0 ]; then
        touch "$WORK/sweeps/gpu-formats/.done"
        step formats "done ($formats)"
    else
        step formats "failed or stopped (exit $rc; $formats)"
    fi
fi

log "all steps passed through; $(left)s before the deadline"
