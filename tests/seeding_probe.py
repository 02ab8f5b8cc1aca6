"""The first batch a run of the harness would train on: each seed's run goes through ``run.run_task`` (the
harness's own run, as a worker runs it) and stops once the trainer has built its train loader, reporting the first
batch's image files and the loader generator's seed. Imported by ``test_seeding.py``, and run as a script in
another Python (an older ultralytics in a temporary venv): ``python seeding_probe.py DATA FOLDER SEED...`` prints
JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))

ARMS = [{"name": "sppf", "block": "SPPF", "args": [5], "baseline": True}]


class Captured(BaseException):
    """Raised from the trainer once its train loader exists: training stops there (not an Exception: a run records
    those as failed and goes on)."""


def first_batches(data: str, folder: str | Path, seeds: list[int], workers: int = 0) -> list[dict]:
    """``[{"seed", "files", "generator"}]`` per seed, in order (a seed may repeat)."""
    from ultralytics.engine.trainer import BaseTrainer

    from ablation_helpers import tiny_spec
    from yolo_necks.ablation.execute import run
    from yolo_necks.ablation.prepare.plan import DataRef
    from yolo_necks.ablation.prepare.prepare import prepare

    prep = prepare(tiny_spec(str(data), Path(folder), arms=ARMS, seeds=sorted(set(seeds)), workers=workers))
    plans = {p.seed: p for p in prep.plans}
    setup = BaseTrainer._setup_train

    def setup_then_stop(self, *args, **kwargs):
        setup(self, *args, **kwargs)
        batch = next(iter(self.train_loader))
        raise Captured([Path(f).name for f in batch["im_file"]], self.train_loader.generator.initial_seed())

    out = []
    with mock.patch.object(BaseTrainer, "_setup_train", setup_then_stop):
        for seed in seeds:
            try:
                run.run_task(run.RunTask(plans[seed], prep.spec, prep.data_ref or DataRef(prep.data), {}))
            except Captured as got:
                out.append({"seed": seed, "files": got.args[0], "generator": got.args[1]})
            else:
                raise AssertionError("the run trained past the point where its train loader exists")
    return out


if __name__ == "__main__":
    import ultralytics

    data, folder, *seeds = sys.argv[1:]
    result = first_batches(data, folder, [int(s) for s in seeds])
    print(json.dumps({"ultralytics": ultralytics.__version__, "batches": result}))
