"""Executor overhead: the same tiny sweep (8 runs of 1 epoch) run one at a time, by local worker processes and as Ray
tasks (a local Ray instance); reports wall time and the overhead per run that is not training/validation/timing.

    python ablations/executor_overhead.py [OUT_DIR]      # writes OUT_DIR/executor_overhead.{csv,md}

Slot seconds per run = (wall time of the sweep - its fixed cost) x runs at once / runs: what one run costs a worker
slot, start-up included. The fixed cost is the wall time of ``--dry-run`` (start-up, checks, building every arm
once). Overhead per run = slot seconds per run - the sequential executor's (which trains in the sweep process, its
imports already done): a worker process's start-up and imports (also those the first run in a fresh process pays
inside the run), scheduling and the driver's bookkeeping. ``mean_run_s_inside_worker`` is measured by the run
itself, from its start in the worker to its row. Each sweep runs in a fresh
process through the CLI, with its own sweep folder, on the same built-in dataset (built once beforehand).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

SPEC = {
    "name": "overhead", "model": "yolov8.yaml", "scale": "n",
    "arms": [{"name": "sppf", "block": "SPPF", "args": [5], "baseline": True},
             {"name": "focal", "block": "FocalModulation", "args": [3, 2, 2]}],
    "data": "digits", "data_params": {"n_train": 16, "n_val": 8, "imgsz": 64}, "epochs": 1, "imgsz": 64, "batch": 4,
    "seeds": [0, 1, 2, 3], "device": "cpu", "workers": 0, "threads_per_run": 1,
    "speed": {"warmup": 1, "repeats": 100, "throughput_batch": 2, "throughput_repeats": 2},
}  # fmt: skip
VARIANTS = {"sequential": ["parallel=1"], "local": ["parallel=2"], "ray": ["executor=ray", "ray_address=local"]}


def main(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="yolo-necks-overhead-"))
    spec = work / "spec.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "project": str(work / "runs")}, sort_keys=False))
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_NECKS_DATA_DIR": str(work / "data")}
    cli = [sys.executable, "-m", "yolo_necks.cli", "ablate", str(spec)]
    subprocess.run([*cli, "--dry-run"], env=env, check=True, capture_output=True)  # builds the dataset once
    t0 = time.perf_counter()
    subprocess.run([*cli, "--dry-run"], env=env, check=True, capture_output=True)
    fixed = time.perf_counter() - t0
    rows = []
    for name, extra in VARIANTS.items():
        t0 = time.perf_counter()
        proc = subprocess.run([*cli, f"name={name}", *extra], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            return 1
        with open(work / "runs" / name / "results.csv", newline="") as f:
            runs = list(csv.DictReader(f))
        slots = 1 if name == "sequential" else 2
        inside = sum(float(r["wall_s"]) for r in runs)
        per_run = (wall - fixed) * slots / len(runs)
        base = rows[0]["slot_s_per_run"] if rows else per_run
        rows.append({"executor": name, "runs": len(runs), "at_once": slots, "sweep_wall_s": round(wall, 1),
                     "fixed_s": round(fixed, 1), "mean_run_s_inside_worker": round(inside / len(runs), 2),
                     "slot_s_per_run": round(per_run, 2), "overhead_per_run_s": round(per_run - base, 2)})  # fmt: skip
        print(rows[-1], flush=True)
    with open(out / "executor_overhead.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(str(v) for v in r.values()) + " |" for r in rows]
    (out / "executor_overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "ablations/results/executor-overhead")))
