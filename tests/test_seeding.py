"""The run's seed reaches the order of the training images (and the loader workers' seeds) on every supported
ultralytics: two seeds give two first-batch orders, one seed always the same (``execute/seeding.py``).

The installed (newest) ultralytics is checked here, and the harness's re-seeding is checked on it with the loader
seeded by the constant older versions use. The oldest supported ultralytics is checked only when asked, since it
needs PyPI: ``YOLO_NECKS_TEST_OLD_ULTRALYTICS=1 pytest tests/test_seeding.py`` creates a temporary venv
(``--system-site-packages``: torch and the rest are reused), installs ultralytics (``OLDEST`` below, or the version
the variable names, e.g. ``=8.3.9``) into it without dependencies, and runs the same check there in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from seeding_probe import first_batches
from yolo_necks.ablation.execute import seeding
from yolo_necks.errors import NeckError

HERE = Path(__file__).resolve().parent
OLD = os.environ.get("YOLO_NECKS_TEST_OLD_ULTRALYTICS", "")
# the oldest ultralytics a sweep was verified on end to end (pyproject's floor; 8.3.9 registers, its runs fail)
OLDEST = "8.3.253"


@pytest.fixture(scope="module")
def newest(tiny_data, tmp_path_factory) -> dict:
    """The installed ultralytics' first batches for seeds 0, 1 and 0 again (``{"batches", "files"}``)."""
    batches = first_batches(str(tiny_data), tmp_path_factory.mktemp("newest"), [0, 1, 0])
    return {"batches": batches, "files": {b["seed"]: b["files"] for b in batches}}


def check_orders(batches: list[dict]) -> None:
    first, other, again = batches
    assert (first["seed"], other["seed"], again["seed"]) == (0, 1, 0)
    assert first["files"] != other["files"]  # two seeds: two orders of the training images
    assert first["files"] == again["files"]  # one seed: one order
    assert len(first["files"]) == 4 and len(set(first["files"])) == 4
    for b in batches:  # the generator that shuffles the images and seeds the loader workers follows the run seed
        assert b["generator"] == seeding.loader_seed(b["seed"])


def test_two_seeds_give_two_image_orders_and_one_seed_one(newest):
    check_orders(newest["batches"])


def test_where_ultralytics_seeds_the_loader_with_a_constant_the_harness_seeds_it_from_the_run(tiny_data, tmp_path,
                                                                                                 newest):
    """ultralytics before 8.4.124 seeds the train loader with ``6148914691236517205 + RANK`` and starts its iterator
    when the loader is built; emulated here on the installed version."""
    from ultralytics.models.yolo.detect import DetectionTrainer
    from ultralytics.utils import RANK

    build = DetectionTrainer.get_dataloader

    def constant_seeded(self, *args, **kwargs):
        loader = build(self, *args, **kwargs)
        loader.generator.manual_seed(seeding.LOADER_CONSTANT + RANK)
        loader.iterator = loader._get_iterator()  # started at once, its permutation drawn from the constant
        return loader

    with mock.patch.object(DetectionTrainer, "get_dataloader", constant_seeded):
        fixed = first_batches(str(tiny_data), tmp_path / "fixed", [1])
        with mock.patch.object(seeding, "seed_data_order", lambda model, seed: None):
            constant = first_batches(str(tiny_data), tmp_path / "constant", [1])
    assert constant[0]["files"] == newest["files"][0]  # left alone: seed 1 trains on seed 0's order
    assert fixed[0]["files"] == newest["files"][1]  # re-seeded: the order of seed 1, as newer versions give it
    assert fixed[0]["generator"] == seeding.loader_seed(1)


def test_versions_that_seed_the_loader_and_ddp_runs_where_none_can():
    assert seeding.loader_seed(0) == seeding.LOADER_CONSTANT - 1  # one process (RANK -1): seed 0 is the constant
    assert seeding.loader_seed(5, rank=0) == seeding.LOADER_CONSTANT + 5
    assert [seeding.seeds_loader(v) for v in ("8.3.9", "8.3.253", "8.4.123", "8.4.124", "8.4.190", "9.0.0")] == [
        False, False, False, True, True, True]
    assert seeding.version_tuple("8.4.124.dev0") == (8, 4, 124)
    seeding.check_ddp("0", "8.3.253")  # one device: the harness re-seeds the loader
    seeding.check_ddp("0,1", "8.4.124")  # DDP where ultralytics seeds the loader itself
    with pytest.raises(NeckError, match=r"^ultralytics 8\.3\.253 seeds the training data loader with a constant"):
        seeding.check_ddp("0,1", "8.3.253")


@pytest.mark.skipif(not OLD, reason="needs PyPI: set YOLO_NECKS_TEST_OLD_ULTRALYTICS=1 (or a version) to run it")
def test_the_oldest_supported_ultralytics_gives_each_seed_its_own_order(tiny_data, tmp_path, newest):
    version = OLD if "." in OLD else OLDEST  # "1": the oldest supported; "8.3.253": that version
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    # tqdm and seaborn: dependencies of 8.3.x that newer ultralytics (installed here) dropped
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", f"ultralytics=={version}", "tqdm",
                    "seaborn"], check=True)
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(tmp_path / "config")}  # its own settings file
    done = subprocess.run([str(python), str(HERE / "seeding_probe.py"), str(tiny_data), str(tmp_path / "runs"), "0",
                           "1", "0"], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["ultralytics"] == version and not seeding.seeds_loader(version)
    check_orders(out["batches"])
    assert [b["files"] for b in out["batches"]] == [b["files"] for b in newest["batches"]]  # as newer versions
