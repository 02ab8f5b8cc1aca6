"""Contrasts between arms: which of two arms is better (``dyca-head`` against ``dyca-sppf``), beside each arm's
comparison with the baseline.

A contrast ``A:B`` is Δ = A − B, paired by the seeds both arms finished, with the same evidence as a baseline
comparison (the seeds, the val set from both arms' bootstrap replicates, Stein's pilot) and decided by the same rule
(:mod:`.decide`), in the same Holm family per metric as the arms compared with the baseline
(:func:`.stats.contrast_rows`): adding contrasts widens every adjusted interval of that family a little, as any
further comparison does. The contrasts come from the sweep's spec (key ``contrasts``, saved in the folder's
spec.yaml) and from ``yolo-necks report --contrast A:B``. ``summary.csv`` holds them as rows with ``contrast`` True
(``arm`` 'A − B', ``contrast_a``, ``contrast_b``); ``summary.md`` in a Contrasts section.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ...errors import NeckConfigError
from ..records.columns import METRICS, SIZE_METRICS, is_true, num
from ..spec.checks import check_contrasts, contrast_pair
from .formatting import NA, fmt_delta, level_text, md_table, p_is

# the metrics the Contrasts table shows after the primary one (when the summary has them)
SHOWN = ("map50_95", "map50", "coco_map50_95", *SIZE_METRICS)


def _spec_contrasts(folder: Path) -> list:
    """The ``contrasts`` of a sweep folder's spec.yaml (checked when the sweep ran), or []."""
    path = folder / "spec.yaml"
    if not path.is_file():
        return []
    import yaml

    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError):
        return []
    value = spec.get("contrasts") if isinstance(spec, dict) else None
    return list(value) if isinstance(value, (list, tuple)) else []


def report_contrasts(folder: str | Path, given: list[str] | None, runs: pd.DataFrame) -> tuple[list, list[str]]:
    """(the contrasts of a report, notes): the folder's spec.yaml ``contrasts`` (those naming an arm without runs here
    are left out, with a note) and the ``--contrast A:B`` given (an unknown arm is a one-line error)."""
    arms = [str(a) for a in dict.fromkeys(runs["arm"])] if "arm" in runs.columns else []
    base_rows = runs[runs["baseline"].map(is_true)] if "baseline" in runs.columns else runs.iloc[0:0]
    baseline = str(base_rows["arm"].iloc[0]) if len(base_rows) else None
    out, notes = [], []
    for item in _spec_contrasts(Path(folder)):
        pair = contrast_pair(item)
        if pair is None or not all(isinstance(x, str) for x in pair) or baseline in pair or pair[0] == pair[1]:
            continue
        missing = [x for x in pair if x not in arms]
        if missing:
            notes.append(f"{pair[0]}:{pair[1]} left out: no runs of {', '.join(missing)} in this sweep")
        elif pair not in out:
            out.append(tuple(pair))
    for pair in check_contrasts("report: --contrast", list(given or []), arms, baseline):
        if pair not in out and pair[::-1] not in out:
            out.append(pair)
    return out, notes


def parse_option(value: str) -> str:
    """One ``--contrast`` value: ``A:B`` (checked against the sweep's arms later)."""
    if value.count(":") != 1 or not all(x.strip() for x in value.split(":")):
        raise NeckConfigError(f"report: --contrast must be two arms A:B, got '{value}'")
    return value


def contrast_section(contrasts: pd.DataFrame, arms: pd.DataFrame, metric: str, level: float,
                     notes: list[str] | None = None) -> list[str]:
    """``## Contrasts``: per contrast the paired seeds, the Δ on the primary metric with its adjusted interval and
    Holm p and the verdict read off it, then the Δ of the other accuracy metrics; what a contrast decides."""
    if not len(contrasts) and not notes:
        return []
    lines = ["", "## Contrasts", ""]
    if len(contrasts):
        k = sum(math.isfinite(num(v)) for _, r in arms.iterrows() if not is_true(r.get("baseline"))
                for v in [r.get(f"{metric}_delta_p_holm")])
        c = sum(math.isfinite(num(v)) for v in contrasts.get(f"{metric}_delta_p_holm", []))
        label = METRICS[metric][0]
        lines.append(
            f"Δ = A − B, paired by the seeds both arms finished, with the same intervals as the comparisons with the "
            f"baseline (the seeds and, where the runs stored bootstrap replicates, the val images) and Holm's "
            f"adjustment in one family per metric: on {label}, the {k} arm{'s' * (k != 1)} compared with the baseline "
            f"and {'this contrast' if c == 1 else f'these {c} contrasts'} (m = {k + c}; the adjusted intervals of the "
            "tables above are in the same family). A contrast says which of its two arms is better on a metric only "
            "where its adjusted interval excludes 0 (**bold**); it ranks no other arm, and it is not a comparison "
            "across sweeps (`yolo-necks compare` is unpaired).")
        lines.append("")
        shown = [m for m in dict.fromkeys((metric, *SHOWN)) if f"{m}_delta" in contrasts.columns]
        header = ["Contrast", "Paired seeds", f"Verdict ({label})"] + [f"Δ {METRICS[m][0]} [adj. CI] p (Holm)"
                                                                       for m in shown]
        rows = []
        for _, r in contrasts.iterrows():
            n = int(num(r.get(f"{metric}_delta_n")) or 0)
            verdict = _verdict_text(r, metric, level)
            rows.append([f"{r['contrast_a']} − {r['contrast_b']}", str(n), verdict]
                        + [fmt_delta(m, {**r.to_dict(), "baseline": False}) for m in shown])
        lines += md_table(header, rows)
    for note in notes or []:
        lines.append(f"- {note}")
    return lines


def _verdict_text(r, metric: str, level: float) -> str:
    """``A better`` / ``B better`` / ``no detectable difference`` / ``undetermined``, from the contrast's verdict."""
    verdict = str(r.get("verdict", ""))
    a, b = str(r["contrast_a"]), str(r["contrast_b"])
    if verdict == "better":
        return f"**{a}** better (Holm p {p_is(r.get(f'{metric}_delta_p_holm'))})"
    if verdict == "worse":
        return f"**{b}** better (Holm p {p_is(r.get(f'{metric}_delta_p_holm'))})"
    if verdict in ("undetermined", "failed"):
        return "undetermined: fewer than 2 paired seeds"
    adj = num(r.get(f"{metric}_delta_adj_level"))
    return verdict + (f" ({level_text(adj)} interval)" if math.isfinite(adj) else "") if verdict else NA
