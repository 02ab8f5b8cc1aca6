"""The val set's share of the noise, measured: a 4x larger val split against the 48-image one, on the same weights.

    python ablations/val_size.py SWEEP_DIR OUT_DIR

Takes a finished sweep of the reduced CPU settings (48 val scenes; e.g. ``ablations/placement.yaml`` with 5 seeds,
whose replace arms are the default's SPPF, DyCAConv, SKConv and FocalModulation arms) and validates every finished
run's weights on its 48-image val split and on a 192-image one with the same parameters, whose first 48 scenes are
the 48 (scene i of a split is seeded by (seed, split, i)); the training scenes are the same, and the reduced settings
train with ``val=False`` (ultralytics validates the final epoch only), so the val split never shaped the weights.
Each validation is the harness's own (the validator, then the bootstrap over images). Writes ``val_size.csv`` (per
run: mAP50-95 and its bootstrap SE on 48 and 192 images, the validation's CPU seconds) and ``val_size.md``: per arm
the paired SD of Δ mAP50-95 with each split, the val sampling's share of its variance, the paired seeds a ±0.02
interval needs, and the CPU time to a ±0.02 decision on every arm with per-arm adaptive seeds (each arm's seeds plus
the baseline's, at the CPU seconds per run measured here: the sweep's training, this validation).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import pandas as pd

TARGET = 0.02


def validate(weights: str, data: str, imgsz: int, batch: int) -> dict:
    """mAP50-95, its bootstrap SE and the CPU seconds of one validation, as the harness validates a run."""
    from ultralytics import YOLO

    from yolo_necks.ablation.execute import valnoise

    model = YOLO(weights, task="detect")
    capture = valnoise.ValCapture()
    model.add_callback("on_val_batch_end", capture)
    c0 = time.process_time()
    metrics = model.val(data=data, split="val", imgsz=imgsz, batch=batch, device="cpu", workers=0, plots=False,
                        verbose=False)
    cpu = time.process_time() - c0
    noise = valnoise.bootstrap(capture)
    names = hashlib.sha256("\n".join(capture.names).encode()).hexdigest()[:12]
    return {"map50_95": float(metrics.box.map), "map50_95_se": noise["map50_95_se"], "val_cpu_s": cpu,
            "names": names, "n_images": len(capture.images), "replicates": noise.get("replicates")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the sweep's threads per run)")
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    import yaml

    from yolo_necks.ablation.analyse.tdist import seeds_needed
    from yolo_necks.datasets import resolve_data

    import torch

    torch.set_num_threads(int(args.threads))  # as the sweep's runs validated (one thread each on 2 cores)
    spec = yaml.safe_load((args.sweep / "spec.yaml").read_text())
    params = spec["data_params"]
    if params.get("n_val") != 48:
        raise SystemExit(f"{args.sweep}: its val split has {params.get('n_val')} scenes, not the reduced 48")
    small = str(resolve_data("digits", **params))
    large = str(resolve_data("digits", **{**params, "n_val": 192}))
    results = pd.read_csv(args.sweep / "results.csv")
    results = results[results["status"] == "ok"].drop_duplicates(["arm", "seed"], keep="last")
    rows, reps = [], {}
    for _, r in results.iterrows():
        a = validate(r["weights"], small, spec["imgsz"], spec["batch"])
        b = validate(r["weights"], large, spec["imgsz"], spec["batch"])
        assert abs(a["map50_95"] - float(r["map50_95"])) < 1e-6, (r["arm"], r["seed"], a["map50_95"], r["map50_95"])
        reps[(r["arm"], int(r["seed"]))] = (a.pop("replicates"), b.pop("replicates"))
        rows.append({"arm": r["arm"], "seed": int(r["seed"]), "baseline": bool(r["baseline"]),
                     "train_cpu_s": float(r["cpu_s"]) - a["val_cpu_s"],
                     **{f"{k}_48": v for k, v in a.items()}, **{f"{k}_192": v for k, v in b.items()}})
    df = pd.DataFrame(rows)
    df.to_csv(out / "val_size.csv", index=False)
    assert (df["n_images_48"] == 48).all() and (df["n_images_192"] == 192).all()

    base = df[df["baseline"]].iloc[0]["arm"]
    seeds = sorted(df["seed"].unique())
    lines = [f"# Val split size: 48 vs 192 images (reduced CPU settings, seeds {seeds[0]}..{seeds[-1]})", "",
             f"Every finished run of `{args.sweep.name}` validated on its 48-image val split and on a 192-image one "
             "(whose first 48 scenes are the 48), with the same trained weights.", "",
             "| arm | SD Δ mAP50-95 (48) | val share (48) | seeds ±0.02 (48) | SD Δ (192) | val share (192) | "
             "seeds ±0.02 (192) |", "|---|---:|---:|---:|---:|---:|---:|"]
    need = {48: {}, 192: {}}
    for arm in dict.fromkeys(df["arm"]):
        if arm == base:
            continue
        cells = [arm]
        for n in (48, 192):
            col = 0 if n == 48 else 1
            pairs = [(s, reps[(arm, s)][col], reps[(base, s)][col]) for s in df[df["arm"] == arm]["seed"]
                     if (base, s) in reps]
            d = [df[(df["arm"] == arm) & (df["seed"] == s)][f"map50_95_{n}"].iloc[0]
                 - df[(df["arm"] == base) & (df["seed"] == s)][f"map50_95_{n}"].iloc[0] for s, _, _ in pairs]
            sd = pd.Series(d).std(ddof=1)
            val_var = sum(float(((a[:, 1] - b[:, 1])).var(ddof=1)) for _, a, b in pairs) / len(pairs)
            need[n][arm] = seeds_needed(sd, TARGET)
            cells += [f"{sd:.4f}", f"{100 * val_var / sd**2:.0f}%", str(need[n][arm])]
        lines.append("| " + " | ".join(cells) + " |")
    train = df["train_cpu_s"].mean()
    lines += ["", "CPU time to a ±0.02 decision on every arm with per-arm adaptive seeds (each arm's seeds plus the "
              "baseline's, at the mean CPU seconds per run measured here):", ""]
    for n in (48, 192):
        per_run = train + df[f"val_cpu_s_{n}"].mean()
        runs = sum(need[n].values()) + max(need[n].values())
        lines.append(f"- {n} val images: {runs} runs x {per_run:.1f} CPU-s (training {train:.1f} + validation "
                     f"{df[f'val_cpu_s_{n}'].mean():.1f}) = {runs * per_run / 60:.1f} CPU-min")
    (out / "val_size.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
