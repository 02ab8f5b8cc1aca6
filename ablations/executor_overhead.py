"""Executor overhead: what running a sweep's runs in worker processes (or Ray tasks) costs beyond the training itself.

    python ablations/executor_overhead.py OUT_DIR [--label NAME] [--part overhead|tiny|smallest|all] [--ray]
                                              [--repeats N]

Every sweep runs through the CLI (``yolo-necks ablate``) in a fresh process, with its own sweep folder, from a
scratch working directory, on built-in datasets built once beforehand; wall time and the CPU time of the sweep
process and of every process it waited for (its worker processes) are recorded. Rows are appended to
``OUT_DIR/executor_overhead.csv`` and ``OUT_DIR/tiny_sweep.csv`` with ``--label`` (e.g. the code version measured)
and ``others_core_s``: the CPU seconds the rest of the machine used meanwhile (from ``/proc/stat``; near 0 for a
clean measurement).

* ``overhead``: 2 arms x 4 seeds and 2 arms x 8 seeds (runs of 1 epoch on 16 images of 64 px, 1 thread per run),
  one at a time (``parallel=1``) and by 2 local workers (``parallel=2``; and as Ray tasks with ``--ray``). The
  difference between the two sizes gives the cost of one more run (``marginal_core_s_per_run``, CPU seconds) and what
  is left the cost of the sweep itself; ``overhead_core_s_per_run`` is the marginal cost of a run beyond the
  sequential executor's, ``fixed_core_s`` the sweep's cost beyond the sequential sweep's (worker start-up, once per
  worker when workers start once). ``slot_s_per_run``: (wall - fixed wall) x runs at once / runs, where the fixed
  wall is that of ``--dry-run`` (start-up, checks, building every arm).
* ``tiny``: the default spec's arms sppf, spp, focal and dyca, 1 seed, 3 epochs on ``digits`` with 48 training
  images of 64 px, batch 8 (4 runs), with ``parallel=1``, ``2`` and ``auto``, each ``--repeats`` times, interleaved;
  ``same_as_parallel_1``: every run's metrics and trained weights equal those of the same run with ``parallel=1``.
* ``smallest``: the overhead spec with one seed (2 runs of about 2 s: the smallest sweep that uses workers), with
  ``parallel=1`` and ``auto`` alternating, ``--repeats`` times each (``smallest_sweep.csv``).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import resource
import shutil
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
}
VARIANTS = {"sequential": ["parallel=1"], "local": ["parallel=2"], "ray": ["executor=ray", "ray_address=local"]}
TINY = ["arms=sppf,spp,focal,dyca", "seeds=[0]", "epochs=3", "data_params={'n_train': 48, 'n_val': 16, 'imgsz': 64}",
        "imgsz=64", "batch=8", "workers=0"]


def cli() -> list[str]:
    exe = shutil.which("yolo-necks")
    return [exe] if exe else [sys.executable, "-m", "yolo_necks.cli"]


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy since boot (every process), from /proc/stat; NaN elsewhere."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


OTHER: list[float] = []  # CPU seconds other processes of the machine used during each timed command


def timed(cmd: list[str], env: dict, cwd: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, the process and the children it waited for) of a command; what
    the rest of the machine used meanwhile goes to OTHER (a measurement beside other work is not a clean one)."""
    before, busy = resource.getrusage(resource.RUSAGE_CHILDREN), machine_busy_s()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    OTHER.append(round(machine_busy_s() - busy - cpu, 1))
    return wall, cpu


def append(path: Path, rows: list[dict]) -> None:
    new = not path.is_file()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        if new:
            w.writeheader()
        w.writerows(rows)


def overhead(work: Path, env: dict, label: str, ray: bool) -> list[dict]:
    spec = work / "overhead.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "project": str(work / "runs")}, sort_keys=False))
    base = [*cli(), "ablate", str(spec)]
    timed([*base, "--dry-run"], env, work)  # builds the dataset once
    fixed, _ = timed([*base, "--dry-run"], env, work)
    measured = {}
    for name, extra in VARIANTS.items():
        if name == "ray" and not ray:
            continue
        for seeds in (4, 8):
            wall, cpu = timed([*base, f"name={name}-{seeds}", f"seeds={seeds}", *extra], env, work)
            with open(work / "runs" / f"{name}-{seeds}" / "results.csv", newline="") as f:
                runs = list(csv.DictReader(f))
            assert len(runs) == 2 * seeds and {r["status"] for r in runs} == {"ok"}, name
            measured[name, seeds] = (wall, cpu, runs, OTHER[-1])
            print(f"{label} {name} {2 * seeds} runs: wall {wall:.1f} s, cpu {cpu:.1f} s, others {OTHER[-1]} s",
                  flush=True)
    rows = []
    seq_marginal = (measured["sequential", 8][1] - measured["sequential", 4][1]) / 8
    seq_fixed = measured["sequential", 4][1] - 8 * seq_marginal
    for (name, seeds), (wall, cpu, runs, other) in measured.items():
        at_once = 1 if name == "sequential" else 2
        marginal = (measured[name, 8][1] - measured[name, 4][1]) / 8
        rows.append({
            "label": label, "executor": name, "runs": len(runs), "at_once": at_once, "sweep_wall_s": round(wall, 1),
            "sweep_core_s": round(cpu, 1), "fixed_wall_s": round(fixed, 1),
            "mean_run_s_inside": round(sum(float(r["wall_s"]) for r in runs) / len(runs), 2),
            "slot_s_per_run": round((wall - fixed) * at_once / len(runs), 2),
            "marginal_core_s_per_run": round(marginal, 2),
            "overhead_core_s_per_run": round(marginal - seq_marginal, 2),
            "fixed_core_s": round(measured[name, 4][1] - 8 * marginal - seq_fixed, 1), "others_core_s": other,
        })
    return rows


def same_weights(runs: list[dict], reference: list[dict]) -> bool:
    """Whether every run's trained weights equal those of the run with the same configuration hash in
    ``reference`` (every tensor, bit for bit)."""
    import torch

    ref = {r["config_hash"]: r["weights"] for r in reference}

    def tensors(path):
        return torch.load(path, map_location="cpu", weights_only=False)["model"].float().state_dict()

    for r in runs:
        a, b = tensors(r["weights"]), tensors(ref[r["config_hash"]])
        if a.keys() != b.keys() or not all(torch.equal(a[k], b[k]) for k in a):
            return False
    return True


def tiny(work: Path, env: dict, label: str, repeats: int) -> list[dict]:
    base = [*cli(), "ablate", *TINY, f"project={work / 'tiny'}"]
    timed([*base, "name=build", "--dry-run"], env, work)  # builds the dataset once
    rows = []
    for rep in range(repeats):
        for parallel in ("1", "2", "auto"):
            name = f"p{parallel}-r{rep}"
            wall, cpu = timed([*base, f"name={name}", f"parallel={parallel}"], env, work)
            with open(work / "tiny" / name / "results.csv", newline="") as f:
                runs = list(csv.DictReader(f))
            assert len(runs) == 4 and {r["status"] for r in runs} == {"ok"}, name
            if parallel == "1":
                reference = runs
            metrics = ("map50", "map50_95", "precision", "recall")
            same = same_weights(runs, reference) and all(
                r[m] == q[m] for r in runs for q in reference if q["config_hash"] == r["config_hash"] for m in metrics)
            rows.append({"label": label, "parallel": parallel, "repeat": rep, "executor": runs[0]["executor"],
                         "runs": len(runs), "sweep_wall_s": round(wall, 1), "sweep_core_s": round(cpu, 1),
                         "mean_run_s_inside": round(sum(float(r["wall_s"]) for r in runs) / len(runs), 2),
                         "same_as_parallel_1": same, "others_core_s": OTHER[-1]})
            print(f"{label} tiny parallel={parallel}: wall {wall:.1f} s, cpu {cpu:.1f} s, others {OTHER[-1]} s",
                  flush=True)
    return rows


def smallest(work: Path, env: dict, label: str, repeats: int) -> list[dict]:
    """The overhead spec with one seed (2 runs of about 2 s), ``parallel=1`` and ``auto`` alternating."""
    spec = work / "smallest.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "seeds": [0], "project": str(work / "runs")}, sort_keys=False))
    base = [*cli(), "ablate", str(spec)]
    timed([*base, "--dry-run"], env, work)  # builds the dataset once
    rows = []
    for repeat in range(repeats):
        for parallel in ("1", "auto"):
            name = f"smallest-{parallel}-{repeat}"
            wall, cpu = timed([*base, f"name={name}", f"parallel={parallel}"], env, work)
            with open(work / "runs" / name / "results.csv", newline="") as f:
                runs = list(csv.DictReader(f))
            assert len(runs) == 2 and {r["status"] for r in runs} == {"ok"}, name
            print(f"{label} smallest parallel={parallel}: wall {wall:.1f} s, cpu {cpu:.1f} s, others {OTHER[-1]} s",
                  flush=True)
            rows.append({"label": label, "parallel": parallel, "repeat": repeat, "executor": runs[0]["executor"],
                         "runs": 2, "sweep_wall_s": round(wall, 1), "sweep_core_s": round(cpu, 1),
                         "others_core_s": OTHER[-1]})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--label", default="current")
    ap.add_argument("--part", choices=("overhead", "tiny", "smallest", "all"), default="all")
    ap.add_argument("--ray", action="store_true", help="also measure the Ray executor (a local Ray instance)")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="yolo-necks-overhead-"))
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_NECKS_DATA_DIR": str(work / "data")}
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; scratch {work}", flush=True)
    if args.part in ("overhead", "all"):
        append(args.out / "executor_overhead.csv", overhead(work, env, args.label, args.ray))
    if args.part in ("tiny", "all"):
        append(args.out / "tiny_sweep.csv", tiny(work, env, args.label, args.repeats))
    if args.part in ("smallest", "all"):
        append(args.out / "smallest_sweep.csv", smallest(work, env, args.label, args.repeats))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
