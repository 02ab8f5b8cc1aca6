"""AP per class: per arm and class, the mean AP50-95 over seeds and the paired Δ against the baseline, from the
sweep's ``per_class.csv`` (:mod:`..records.perclass`: ultralytics' own per-class AP of each run's validation).

Per class, the arms compared with the baseline form one Holm family, like a summarised metric (:mod:`.stats`); the
classes are not adjusted against each other, so a per-class Δ is a breakdown to read, never a verdict. The long
table goes to ``summary_per_class.csv``; ``summary.csv`` gets one ``class_<name>_delta`` column per class;
``summary.md`` lists every class when there are at most :data:`MAX_LISTED`, else each arm's three biggest gains and
losses.
"""

from __future__ import annotations

import math
import re

import pandas as pd

from ..records.columns import is_true
from .formatting import NA, md_table, signed
from .decide import holm, holm_levels
from .stats import paired_delta
from .tdist import half_width

SUMMARY_PER_CLASS = "summary_per_class.csv"
MAX_LISTED = 10  # at most this many classes: all of them in summary.md; more: the three biggest gains and losses
COLUMNS = ["arm", "baseline", "class", "name", "n_instances", "n_ok", "ap50_mean", "ap50_95_mean", "ap50_95_std",
           "delta", "delta_lo", "delta_hi", "delta_n", "delta_sd", "delta_p", "delta_p_holm", "delta_adj_lo",
           "delta_adj_hi", "delta_adj_level", "delta_sig"]


def class_summary(classes: pd.DataFrame, runs: pd.DataFrame, base_arm: str | None,
                  level: float = 0.95) -> pd.DataFrame:
    """One row per (arm, class) (:data:`COLUMNS`) over the latest finished runs of ``runs``; empty without per-class
    rows. ``classes``: :func:`~yolo_necks.ablation.records.perclass.read`."""
    if classes is None or not len(classes) or "config_hash" not in runs.columns:
        return pd.DataFrame(columns=COLUMNS)
    ok = runs[runs["status"].astype(str) == "ok"]
    where = {str(h): (a, s) for h, a, s in zip(ok["config_hash"], ok["arm"], ok["seed"])}
    c = classes[classes["config_hash"].astype(str).isin(where)].copy()
    if not len(c):
        return pd.DataFrame(columns=COLUMNS)
    c["arm"] = [where[str(h)][0] for h in c["config_hash"]]
    c["seed"] = [where[str(h)][1] for h in c["config_hash"]]
    for col in ("ap50", "ap50_95", "n_instances"):
        c[col] = pd.to_numeric(c[col], errors="coerce")
    arms = sorted(dict.fromkeys(ok["arm"]), key=lambda a: a != base_arm)
    rows = []
    for cls in sorted(dict.fromkeys(c["class"]), key=lambda v: (str(type(v)), v)):
        of = c[c["class"] == cls]
        base = of[of["arm"] == base_arm]
        base_values = dict(zip(base["seed"], base["ap50_95"]))
        block = []
        for arm in arms:
            mine = of[of["arm"] == arm]
            values = dict(zip(mine["seed"], mine["ap50_95"]))
            is_base = arm == base_arm
            d = paired_delta(values, base_values, level) if base_arm is not None and not is_base else None
            nan = float("nan")
            block.append({
                "arm": arm, "baseline": is_base, "class": cls, "name": str(of["name"].iloc[-1]),
                "n_instances": int(of["n_instances"].max()) if of["n_instances"].notna().any() else 0,
                "n_ok": len(mine), "ap50_mean": float(mine["ap50"].mean()) if len(mine) else nan,
                "ap50_95_mean": float(mine["ap50_95"].mean()) if len(mine) else nan,
                "ap50_95_std": float(mine["ap50_95"].std(ddof=1)) if len(mine) > 1 else nan,
                "delta": d.mean if d else nan, "delta_lo": d.lo if d else nan, "delta_hi": d.hi if d else nan,
                "delta_n": d.n if d else 0, "delta_sd": d.sd if d else nan,
                "delta_p": d.p if d and d.n >= 2 else nan,
            })
        ps = [r["delta_p"] for r in block]
        alpha = 1.0 - level
        for r, p_holm, lv in zip(block, holm(ps), holm_levels(ps, alpha)):
            half = half_width(r["delta_sd"], r["delta_n"], lv) if math.isfinite(lv) else float("nan")
            r.update(delta_p_holm=p_holm, delta_adj_lo=r["delta"] - half, delta_adj_hi=r["delta"] + half,
                     delta_adj_level=lv, delta_sig=bool(math.isfinite(p_holm) and p_holm <= alpha))
        rows += block
    return pd.DataFrame(rows, columns=COLUMNS)


def column_name(name: str, cls, taken: set[str]) -> str:
    """``class_<name>_delta`` (the name folder-safe; with the class index where two names would collide)."""
    safe = re.sub(r"[^A-Za-z0-9_]+", "_", str(name)).strip("_") or str(cls)
    col = f"class_{safe}_delta"
    return col if col not in taken else f"class_{cls}_{safe}_delta"


def add_class_columns(summary: pd.DataFrame, per_class: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with one ``class_<name>_delta`` column per class: each arm's paired Δ AP50-95 on that class."""
    if not len(per_class) or summary.empty:
        return summary
    extra: dict[str, list] = {}
    for cls in dict.fromkeys(per_class["class"]):
        of = per_class[per_class["class"] == cls]
        col = column_name(of["name"].iloc[0], cls, set(extra))
        by_arm = dict(zip(of["arm"], of["delta"]))
        extra[col] = [by_arm.get(a, float("nan")) for a in summary["arm"]]
    return pd.concat([summary, pd.DataFrame(extra, index=summary.index)], axis=1)


def _cell(r) -> str:
    """``**+0.030** [+0.010, +0.050]`` (bold when the adjusted interval excludes 0), ``+0.030 [CI n/a, n=1]``."""
    d, n = r["delta"], int(r["delta_n"] or 0)
    if not math.isfinite(d):
        return NA
    text = signed("map50_95", d)
    lo, hi = r["delta_adj_lo"], r["delta_adj_hi"]
    if n < 2 or not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{text} [CI {NA}, n={n}]"
    text = f"**{text}**" if is_true(r["delta_sig"]) else text
    return f"{text} [{signed('map50_95', lo)}, {signed('map50_95', hi)}]"


def class_section(per_class: pd.DataFrame) -> list[str]:
    """``## AP per class``: every class (at most :data:`MAX_LISTED`), else each arm's three biggest gains and
    losses; nothing for a sweep without per-class rows."""
    if not len(per_class):
        return []
    names = list(dict.fromkeys(per_class["name"]))
    base_rows = per_class[per_class["baseline"].map(is_true)]
    base = str(base_rows["arm"].iloc[0]) if len(base_rows) else None
    others = [a for a in dict.fromkeys(per_class["arm"]) if a != base]
    lines = ["", "## AP per class", ""]
    note = (f"AP50-95 per class from ultralytics' per-class results of each run's validation (per_class.csv: "
            f"{len(names)} classes with boxes in the val split); Δ = arm − {base or 'baseline'}, paired by seed, "
            "[adj. CI] adjusted with Holm over the arms per class, **bold** where it excludes 0. The classes are not "
            "adjusted against each other: read them as a breakdown of the verdict, not as verdicts. Every number: "
            f"{SUMMARY_PER_CLASS}.")
    if base is None or not others:
        return lines + ["No baseline comparison: per-class means only, in " + SUMMARY_PER_CLASS + "."]
    if len(names) <= MAX_LISTED:
        header = ["Class", "Boxes", f"{base} AP50-95"] + [f"Δ {a}" for a in others]
        rows = []
        for cls in dict.fromkeys(per_class["class"]):
            of = per_class[per_class["class"] == cls].set_index("arm")
            b = of.loc[base] if base in of.index else None
            cells = [str(of["name"].iloc[0]), str(int(of["n_instances"].max())),
                     f"{b['ap50_95_mean']:.3f}" if b is not None and math.isfinite(b["ap50_95_mean"]) else NA]
            cells += [_cell(of.loc[a]) if a in of.index else NA for a in others]
            rows.append(cells)
        return lines + md_table(header, rows) + ["", note]
    for arm in others:
        mine = per_class[(per_class["arm"] == arm) & per_class["delta"].map(math.isfinite)]
        if not len(mine):
            lines.append(f"- **{arm}**: no class with a paired Δ")
            continue
        ranked = mine.sort_values("delta", ascending=False)
        gains = [r for _, r in ranked.head(3).iterrows() if r["delta"] > 0]
        losses = [r for _, r in ranked.iloc[::-1].head(3).iterrows() if r["delta"] < 0]
        lines.append(f"- **{arm}**: biggest gains {_listed(gains)}; biggest losses {_listed(losses)}")
    return lines + ["", note]


def _listed(rows: list) -> str:
    return ", ".join(f"{r['name']} {_cell(r)}" for r in rows) or "none"
