"""The GPU run script (ablations/gpu/run.sh) end to end on the CPU with ``--dry-run``: the same steps as on the GPU
machine (install check, sampler, one sweep per packing level, bench, the optional formats step, packing into OUT)
with tiny settings, so that the script a GPU session runs unchanged cannot rot. A fake ``nvidia-smi`` stands in for
the sampler's source; a second call, in a fresh work folder, resumes from the first call's archive unpacked as
ablations/gpu/README.md says."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "ablations" / "gpu" / "run.sh"
OUT_FILES = {"gpu-sweep.tar.gz", "benchmark.md", "benchmark.csv", "bench.csv", "bench.md", "env.txt", "run.log"}

FAKE_SMI = """#!/usr/bin/env bash
# stands in for nvidia-smi: -L, a busy % / memory sample, or the one-line description of the GPU
case " $* " in
  *" -L "*) echo "GPU 0: Fake GPU (UUID: GPU-0)" ;;
  *utilization.gpu*) echo "37, 1024" ;;
  *) echo "Fake GPU, 0.0, 1024 MiB, 0 MHz, 0 W" ;;
esac
"""

pytestmark = pytest.mark.skipif(not (shutil.which("bash") and shutil.which("tar") and shutil.which("timeout")),
                                reason="needs bash, tar and timeout")


def run_script(args: list[str], out: Path, fake_bin: Path, timeout: int = 1500):
    env = {
        **os.environ, "OUT": str(out), "PYTHON": sys.executable, "YOLO_OFFLINE": "1",
        "PATH": os.pathsep.join([str(fake_bin), str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def read_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def archive_text(tar: tarfile.TarFile, name: str) -> str:
    return tar.extractfile(tar.getmember(name)).read().decode()


@pytest.fixture(scope="module")
def fake_bin(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fake-bin")
    smi = d / "nvidia-smi"
    smi.write_text(FAKE_SMI)
    smi.chmod(0o755)
    return d


@pytest.mark.slow
def test_dry_run_end_to_end_then_resume(tmp_path, fake_bin):
    out = tmp_path / "out"
    r = run_script(["--dry-run"], out, fake_bin)
    assert r.returncode == 0, (r.stdout[-4000:], r.stderr[-4000:])

    # what comes back: at most 8 plain files with plain names, no folders
    files = sorted(p.name for p in out.iterdir())
    assert set(files) == OUT_FILES and len(files) <= 8
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", f) and (out / f).is_file() for f in files)

    with tarfile.open(out / "gpu-sweep.tar.gz") as tar:
        names = set(tar.getnames())
        assert not any(n.endswith(".pt") for n in names)  # weights stay behind
        for level in (4, 2):
            sweep = f"./sweeps/gpu-rpd{level}"
            for f in ("results.csv", "summary.md", "summary.csv", "speed.csv", "spec.yaml", ".done"):
                assert f"{sweep}/{f}" in names
            rows = read_csv(archive_text(tar, f"{sweep}/results.csv"))
            assert len(rows) == 2 and {r["status"] for r in rows} == {"ok"}
            assert {r["arm"] for r in rows} == {"sppf", "spp"}
            assert "sppf" in archive_text(tar, f"{sweep}/summary.md")
        hashes = [{r["config_hash"] for r in read_csv(archive_text(tar, f"./sweeps/gpu-rpd{lv}/results.csv"))}
                  for lv in (4, 2)]
        assert hashes[0] == hashes[1]  # packing is not part of a run's configuration

    bench = read_csv((out / "benchmark.csv").read_text())
    assert [b["level"] for b in bench] == ["4", "2"]
    for b in bench:
        assert b["status"] == "done" and b["runs_ok"] == "2" and b["runs_planned"] == "2" and b["runs_trained"] == "2"
        assert int(b["gpu_samples"]) > 0 and float(b["gpu_busy_mean"]) == 37.0 and float(b["gpu_mem_max_mib"]) == 1024
        assert float(b["wall_s_per_run"]) > 0
    md = (out / "benchmark.md").read_text()
    assert "| 4 | done | 2 / 2 |" in md and "| 2 | done | 2 / 2 |" in md and "Fake GPU" in md
    assert re.search(r"formats: (skipped|done)", md)
    micro = read_csv((out / "bench.csv").read_text())
    assert micro and {m["device"] for m in micro} == {"cpu"}
    assert "yolo_necks" in (out / "env.txt").read_text()
    assert not list((tmp_path / "gpu-work").rglob("*.partial"))

    # a fresh machine: a new work folder, and the archive unpacked into a results folder as README.md says (per-run
    # files dropped), as if its rpd4 sweep had been stopped after its last run (no .done marker): that sweep runs
    # again and finds every run by its configuration hash
    results = tmp_path / "results"
    with tarfile.open(out / "gpu-sweep.tar.gz") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(results, filter="data")
        else:  # a Python without extraction filters
            tar.extractall(results)
    for p in [*results.rglob("train.log"), *results.rglob("val_bootstrap.npz"), results / "sweeps/gpu-rpd4/.done"]:
        p.unlink()
    for p in [*results.rglob("val"), *results.rglob("weights")]:
        shutil.rmtree(p)
    out2 = tmp_path / "out2"
    r = run_script(["--dry-run", "--levels", "4", "--work", str(tmp_path / "work2"), "--resume", str(results)], out2,
                   fake_bin)
    assert r.returncode == 0, (r.stdout[-4000:], r.stderr[-4000:])
    seg_old, seg_new = [s for s in read_csv((tmp_path / "work2" / "segments.csv").read_text()) if s["level"] == "4"]
    assert seg_old["rows_after"] == seg_new["rows_before"] == "2"
    assert seg_new["rows_after"] == "2" and seg_new["outcome"] == "done"  # a run trained again would add its row
    assert "bench: done in an earlier call" in (out2 / "benchmark.md").read_text()
    assert (out2 / "bench.csv").read_text() == (out / "bench.csv").read_text()


def test_bad_arguments_are_one_line_errors(tmp_path, fake_bin):
    for args, message in [
        (["--bogus"], "unknown option '--bogus'"),
        (["--deadline-s", "soon"], "--deadline-s must be"),
        (["--levels", "4;rm"], "--levels must be"),
        (["--resume", str(tmp_path / "missing.tar.gz")], "--resume: no such file"),
    ]:
        r = run_script(["--dry-run", *args], tmp_path / "out", fake_bin, timeout=60)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert r.stderr.strip().count("\n") == 0 and message in r.stderr, (args, r.stderr)
