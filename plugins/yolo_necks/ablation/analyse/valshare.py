"""The val sampling's part of a paired Δ, from the runs' stored bootstrap replicates (:mod:`..records.replicates`)."""

from __future__ import annotations

import math

import numpy as np

from ..records.replicates import load


def paired_val_variance(arm_dirs: dict, base_dirs: dict, column: int) -> tuple[float, int]:
    """Mean over the seeds both have of ``var_b(arm_b - baseline_b)``: the val sampling's variance of one paired
    difference (``column`` 0: mAP50, 1: mAP50-95); (NaN, 0) when no seed has both replicates on matching images."""
    values = []
    for seed, folder in arm_dirs.items():
        a, b = load(folder), load(base_dirs.get(seed, ""))
        if a is None or b is None or a[1] != b[1] or a[0].shape != b[0].shape:
            continue
        values.append(float(np.var(a[0][:, column] - b[0][:, column], ddof=1)))
    return (sum(values) / len(values), len(values)) if values else (math.nan, 0)


def val_share(runs, arm: str, base: str, metric: str, delta_sd: float) -> dict:
    """How much of the paired variance of an arm's Δ (``delta_sd`` over seeds) the val sampling explains.

    From the runs' paired bootstrap replicates where their folders hold them (``basis`` 'paired bootstrap'); else
    from the per-run standard errors as if the two runs' val noise were independent, which overstates it when the
    same hard images hurt both (``basis`` 'independent SEs (upper bound)'). NaN without either.
    """
    column = {"map50": 0, "map50_95": 1}.get(metric)
    out = {"val_sd": math.nan, "val_share": math.nan, "basis": ""}
    if column is None or "run_dir" not in runs.columns:
        return out
    ok = runs[runs["status"].astype(str) == "ok"]
    dirs = {name: dict(zip(ok[ok["arm"] == name]["seed"], ok[ok["arm"] == name]["run_dir"])) for name in (arm, base)}
    var, n = paired_val_variance(dirs[arm], dirs[base], column)
    if n:
        out["basis"] = "paired bootstrap"
    elif f"{metric}_se" in ok.columns:
        se = {name: dict(zip(ok[ok["arm"] == name]["seed"], ok[ok["arm"] == name][f"{metric}_se"])) for name in dirs}
        pairs = [se[arm][s] ** 2 + se[base][s] ** 2 for s in se[arm] if s in se[base]]
        pairs = [v for v in pairs if math.isfinite(v)]
        if pairs:
            var, out["basis"] = sum(pairs) / len(pairs), "independent SEs (upper bound)"
    if out["basis"]:
        out["val_sd"] = math.sqrt(var)
        out["val_share"] = var / delta_sd**2 if delta_sd and math.isfinite(delta_sd) and delta_sd > 0 else math.nan
    return out
