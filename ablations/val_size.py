"""The val set's share of the noise, measured: the reduced default with a 4x larger val split against the 48-image one.

    python ablations/val_size.py OUT_DIR [--seeds 5]

1. Runs the reduced CPU default (every arm, seeds 0..N-1) with ``data_params.n_val=192`` into ``OUT_DIR/sweep``: the
   same 192 training scenes and schedule as the default (the reduced default trains with ``val=False``: ultralytics
   validates the final epoch only, so the val split does not shape the trained weights).
2. Validates every run's weights again on the default's 48-image split, whose scenes are the first 48 of the 192
   (scene i of a split is seeded by (seed, split, i)), with the same validator call and bootstrap the harness uses.
3. Writes ``val_size.csv`` (per run: mAP50-95 and its bootstrap SE on 48 and 192 images, val CPU seconds) and
   ``val_size.md``: per arm the paired SD of Δ mAP50-95 with each split, the val sampling's share of it, the paired
   seeds a ±0.02 interval needs, and the CPU time to a ±0.02 decision with per-arm adaptive seeds (the runs each arm
   needs plus the baseline's, at the measured CPU seconds per run: training + validation).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.02


def validate(weights: str, data: str, imgsz: int, batch: int) -> dict:
    """mAP50-95, its bootstrap SE and the CPU seconds of one validation, as the harness validates a run."""
    from ultralytics import YOLO

    from yolo_necks.ablation import valnoise

    model = YOLO(weights, task="detect")
    capture = valnoise.ValCapture()
    model.add_callback("on_val_batch_end", capture)
    c0 = time.process_time()
    metrics = model.val(data=data, split="val", imgsz=imgsz, batch=batch, device="cpu", workers=0, plots=False,
                        verbose=False)  # fmt: skip
    cpu = time.process_time() - c0
    noise = valnoise.bootstrap(capture)
    names = hashlib.sha256("\n".join(capture.names).encode()).hexdigest()[:12]
    return {"map50_95": float(metrics.box.map), "map50_95_se": noise["map50_95_se"], "val_cpu_s": cpu,
            "names": names, "n_images": len(capture.images), "replicates": noise.get("replicates")}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "yolo_necks.cli", "ablate", f"project={out}", "name=sweep", f"seeds={args.seeds}",
           "data_params.n_val=192"]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True)
    sweep_wall = time.perf_counter() - t0

    from yolo_necks.ablation.keys import DEFAULT_SPEC
    from yolo_necks.ablation.tdist import seeds_needed
    from yolo_necks.datasets import resolve_data

    cpu = DEFAULT_SPEC["cpu"]
    small = str(resolve_data("digits", **cpu["data_params"]))
    large = str(resolve_data("digits", **{**cpu["data_params"], "n_val": 192}))
    results = pd.read_csv(out / "sweep" / "results.csv")
    results = results[results["status"] == "ok"]
    rows, reps = [], {}
    for _, r in results.iterrows():
        a = validate(r["weights"], small, cpu["imgsz"], cpu["batch"])
        b = validate(r["weights"], large, cpu["imgsz"], cpu["batch"])
        reps[(r["arm"], int(r["seed"]))] = (a.pop("replicates"), b.pop("replicates"))
        rows.append({"arm": r["arm"], "seed": int(r["seed"]), "baseline": bool(r["baseline"]),
                     "train_cpu_s": float(r["cpu_s"]) - float(r["val_s"]),
                     **{f"{k}_48": v for k, v in a.items()}, **{f"{k}_192": v for k, v in b.items()}})  # fmt: skip
    df = pd.DataFrame(rows)
    df.to_csv(out / "val_size.csv", index=False)
    assert (df["n_images_48"] == 48).all() and (df["n_images_192"] == 192).all()

    base = df[df["baseline"]].iloc[0]["arm"]
    lines = [f"# Val split size: 48 vs 192 images (reduced CPU default, seeds 0..{args.seeds - 1})", "",
             f"Sweep with the 192-image val split: {sweep_wall / 60:.1f} min wall; every run then validated again on "
             "the default's 48-image split (its first 48 scenes). Same trained weights for both columns.", "",
             "| arm | SD Δ mAP50-95 (48) | val share (48) | seeds ±0.02 (48) | SD Δ (192) | val share (192) | "
             "seeds ±0.02 (192) |", "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    need = {48: {}, 192: {}}
    for arm in dict.fromkeys(df["arm"]):
        if arm == base:
            continue
        cells = [arm]
        for n in (48, 192):
            col = 0 if n == 48 else 1
            pairs = [(s, reps[(arm, s)][col], reps[(base, s)][col]) for s in df[df["arm"] == arm]["seed"]
                     if (base, s) in reps]  # fmt: skip
            d = [df[(df["arm"] == arm) & (df["seed"] == s)][f"map50_95_{n}"].iloc[0]
                 - df[(df["arm"] == base) & (df["seed"] == s)][f"map50_95_{n}"].iloc[0] for s, _, _ in pairs]  # fmt: skip
            sd = pd.Series(d).std(ddof=1)
            val_var = sum(float(((a[:, 1] - b[:, 1])).var(ddof=1)) for _, a, b in pairs) / len(pairs)
            need[n][arm] = seeds_needed(sd, TARGET)
            cells += [f"{sd:.4f}", f"{100 * val_var / sd**2:.0f}%", str(need[n][arm])]
        lines.append("| " + " | ".join(cells) + " |")
    train = df["train_cpu_s"].mean()
    lines += ["", "CPU time to a ±0.02 decision on every arm with per-arm adaptive seeds (each arm's seeds plus the "
              "baseline's, at the mean CPU seconds per run measured here):", ""]  # fmt: skip
    for n in (48, 192):
        per_run = train + df[f"val_cpu_s_{n}"].mean()
        runs = sum(need[n].values()) + max(need[n].values())
        lines.append(f"- {n} val images: {runs} runs x {per_run:.1f} CPU-s (training {train:.1f} + validation "
                     f"{df[f'val_cpu_s_{n}'].mean():.1f}) = {runs * per_run / 60:.1f} CPU-min")  # fmt: skip
    (out / "val_size.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
