"""Summaries of the GPU run (ablations/gpu/run.sh): per packing level, wall time, runs and GPU busy %.

    python ablations/gpu/summarise.py report WORK --levels 4,2   # writes WORK/benchmark.md and WORK/benchmark.csv
    python ablations/gpu/summarise.py rows RESULTS.csv           # prints the rows of a results.csv (0: none)
    python ablations/gpu/summarise.py level-wall WORK LEVEL      # prints the wall seconds a packing level took

Reads only what run.sh wrote in the work folder: segments.csv (one row per stretch of a sweep in one call),
gpu/*.csv (nvidia-smi samples, one a second: utilization.gpu, memory.used), sweeps/gpu-rpdL/ (the sweep folders),
steps.txt and env.txt. Standard library only, so it runs before anything is installed.
"""

from __future__ import annotations

import csv
import statistics
import sys
from pathlib import Path

COLUMNS = [
    "level", "status", "runs_planned", "rows", "runs_ok", "runs_failed", "segments", "wall_s", "runs_trained",
    "wall_s_per_run", "runs_per_hour", "train_s_median", "gpu_busy_mean", "gpu_busy_median", "gpu_mem_mean_mib",
    "gpu_mem_max_mib", "gpu_samples",
]


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [r for r in csv.DictReader(f) if r.get("config_hash")]


def planned_runs(sweep: Path) -> int | None:
    """arms x seeds of the sweep's saved spec (None when there is none or seeds are adaptive)."""
    spec = sweep / "spec.yaml"
    if not spec.is_file():
        return None
    try:
        import yaml

        d = yaml.safe_load(spec.read_text())
    except Exception:
        return None
    seeds = d.get("seeds")
    n_seeds = seeds if isinstance(seeds, int) else len(seeds) if isinstance(seeds, list) else None
    return None if n_seeds is None else len(d.get("arms") or []) * n_seeds


def samples(path: Path) -> list[tuple[float, float]]:
    """(busy %, memory MiB) per nvidia-smi line; lines that are not two numbers ([N/A], a cut last line) are skipped."""
    out = []
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        parts = [p.strip() for p in line.split(",")]
        try:
            out.append((float(parts[0]), float(parts[1])))
        except (IndexError, ValueError):
            continue
    return out


def segments(work: Path) -> list[dict]:
    path = work / "segments.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def fmt(x: float | None, nd: int = 1) -> str:
    return "" if x is None else f"{x:.{nd}f}"


def level_summary(work: Path, level: str) -> dict:
    sweep = work / "sweeps" / f"gpu-rpd{level}"
    rows = read_rows(sweep / "results.csv")
    segs = [s for s in segments(work) if s["level"] == level]
    wall = sum(int(s["wall_s"]) for s in segs)
    trained = sum(int(s["rows_after"]) - int(s["rows_before"]) for s in segs)
    gpu = [x for s in segs if s.get("samples") for x in samples(work / s["samples"])]
    busy = [b for b, _ in gpu]
    mem = [m for _, m in gpu]
    train_s = [float(r["train_s"]) for r in rows if r.get("status") == "ok" and r.get("train_s")]
    status = "done" if (sweep / ".done").is_file() else "partial" if rows else "not run"
    return {
        "level": level, "status": status, "runs_planned": planned_runs(sweep) or "", "rows": len(rows),
        "runs_ok": sum(r.get("status") == "ok" for r in rows),
        "runs_failed": sum(r.get("status") != "ok" for r in rows), "segments": len(segs), "wall_s": wall,
        "runs_trained": trained, "wall_s_per_run": fmt(wall / trained if trained else None),
        "runs_per_hour": fmt(3600 * trained / wall if trained and wall else None),
        "train_s_median": fmt(statistics.median(train_s) if train_s else None),
        "gpu_busy_mean": fmt(statistics.fmean(busy) if busy else None),
        "gpu_busy_median": fmt(statistics.median(busy) if busy else None),
        "gpu_mem_mean_mib": fmt(statistics.fmean(mem) if mem else None, 0),
        "gpu_mem_max_mib": fmt(max(mem) if mem else None, 0), "gpu_samples": len(gpu),
    }


def agreement(work: Path, levels: list[str]) -> list[str]:
    """Runs with the same config hash trained at two packing levels: how far apart their mAP50-95 came out."""
    lines = []
    by_level = {
        lv: {r["config_hash"]: r for r in read_rows(work / "sweeps" / f"gpu-rpd{lv}" / "results.csv")
             if r.get("status") == "ok"}
        for lv in levels
    }
    for i, a in enumerate(levels):
        for b in levels[i + 1 :]:
            common = sorted(set(by_level[a]) & set(by_level[b]))
            if not common:
                continue
            diffs = [abs(float(by_level[a][h]["map50_95"]) - float(by_level[b][h]["map50_95"])) for h in common]
            lines.append(f"- rpd{a} vs rpd{b}: {len(common)} runs with the same configuration hash; "
                         f"|Δ mAP50-95| max {max(diffs):.4f}, mean {statistics.fmean(diffs):.4f} "
                         "(0 would mean packing does not change a run's result on this GPU)")
    return lines


def gpu_name(work: Path) -> str:
    env = work / "env.txt"
    for line in env.read_text().splitlines() if env.is_file() else []:
        if line.startswith("GPU 0:"):
            return line.split(":", 1)[1].split("(UUID")[0].strip()
    return "no GPU seen (dry run on the CPU)"


def report(work: Path, levels: list[str]) -> None:
    table = [level_summary(work, lv) for lv in levels]
    with (work / "benchmark.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(table)
    steps = (work / "steps.txt").read_text().splitlines() if (work / "steps.txt").is_file() else []
    md = [
        f"# GPU run: the default sweep packed on one GPU ({gpu_name(work)})",
        "",
        "Written by `ablations/gpu/summarise.py` from what `ablations/gpu/run.sh` recorded. One sweep folder per "
        "packing level (`runs_per_device`), each the same runs (same configuration hashes). Wall time counts every "
        "stretch of that level's sweep in every call (start-up, dataset, runs, timing the arms); runs trained = rows "
        "added in those stretches; a stretch stopped by the deadline also paid for runs it did not finish. GPU busy % "
        "and memory: `nvidia-smi --query-gpu=utilization.gpu,memory.used`, about once a second over the same stretches "
        "(busy % = the share of the driver's last sample period in which a kernel ran, not how full the GPU was).",
        "",
        "| runs_per_device | status | runs ok / planned | failed | wall (s) | runs trained | s per run | runs per hour "
        "| median train_s | GPU busy mean % | median % | memory mean / max (MiB) | samples |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in table:
        md.append(
            f"| {r['level']} | {r['status']} | {r['runs_ok']} / {r['runs_planned'] or '?'} | {r['runs_failed']} "
            f"| {r['wall_s']} | {r['runs_trained']} | {r['wall_s_per_run'] or '—'} | {r['runs_per_hour'] or '—'} "
            f"| {r['train_s_median'] or '—'} | {r['gpu_busy_mean'] or 'n/a'} | {r['gpu_busy_median'] or 'n/a'} "
            f"| {r['gpu_mem_mean_mib'] or 'n/a'} / {r['gpu_mem_max_mib'] or 'n/a'} | {r['gpu_samples']} |"
        )
    segs = segments(work)
    if segs:
        md += ["", "## Stretches", "", "| level | call | wall (s) | rows before → after | outcome | samples |",
               "|---:|---|---:|---|---|---|"]
        md += [f"| {s['level']} | {s['call']} | {s['wall_s']} | {s['rows_before']} → {s['rows_after']} "
               f"| {s['outcome']} | {s['samples'] or 'none'} |" for s in segs]
    same = agreement(work, levels)
    if same:
        md += ["", "## Same runs at two packing levels", "", *same]
    md += ["", "## Steps", "", "```", *steps, "```", ""]
    (work / "benchmark.md").write_text("\n".join(md))


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "rows":
        print(len(read_rows(Path(argv[1]))))
        return 0
    if len(argv) == 3 and argv[0] == "level-wall":
        print(sum(int(s["wall_s"]) for s in segments(Path(argv[1])) if s["level"] == argv[2]))
        return 0
    if len(argv) == 4 and argv[0] == "report" and argv[2] == "--levels":
        report(Path(argv[1]), [lv for lv in argv[3].split(",") if lv])
        return 0
    print("usage: summarise.py report WORK --levels 4,2 | rows RESULTS.csv | level-wall WORK LEVEL", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
