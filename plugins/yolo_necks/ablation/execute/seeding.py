"""The run's seed reaches the order of the training images and the seeds of the data-loader workers, on every
supported ultralytics.

ultralytics shuffles the training images with the train loader's ``torch.Generator``, and each loader worker's seed
(``seed_worker``: the python, numpy and torch generators of the augmentation in that worker) is drawn from the same
generator. ultralytics 8.4.124 and later seed it from the training seed, ``6148914691236517205 + RANK + seed``
(``data/build.py``, ``seed = torch.initial_seed() - RANK - 1``, which ``init_seeds(seed + 1 + RANK)`` set); 8.3.x and
8.4.0 to 8.4.123 seed it with the constant ``6148914691236517205 + RANK``. There, every seed of a sweep sees the
images in the same order and, with ``workers > 0``, the same augmentation: only the initialisation varies, and a
sweep understates the seed-to-seed variance and every interval built on it.

:func:`seed_data_order` closes that gap for one run. It adds a trainer callback (``on_pretrain_routine_start``: before
any loader is built) that wraps *that trainer's* ``get_dataloader``: a train loader whose generator holds the
constant is re-seeded with the value newer ultralytics uses, and where the version already started the loader's
iterator (8.3.x starts it when the loader is built) that iterator is started again, so that the first permutation
and the worker seeds are drawn from the re-seeded generator. A run on an older version then sees the same order as on
a newer one with the same seed. Where ultralytics seeds the loader itself, nothing changes. Nothing global is patched:
the wrapper lives on the trainer object and goes with it (a rebuilt loader, e.g. after an out-of-memory retry, goes
through it too).

A multi-device (DDP) run trains in processes ultralytics starts from a generated script, which no callback reaches: on
a version that seeds with the constant such a run is refused with one line (:func:`check_ddp`).
"""

from __future__ import annotations

from ...errors import NeckError

LOADER_CONSTANT = 6148914691236517205  # ultralytics' loader seed (data/build.py), + RANK (+ seed since 8.4.124)
SEEDED_SINCE = (8, 4, 124)  # the first ultralytics release that seeds the train loader from the training seed


def loader_seed(seed: int, rank: int = -1) -> int:
    """The train loader's generator seed for a run seed, as ultralytics >= 8.4.124 computes it (``rank`` -1: one
    process; with seed 0 it equals the constant of older versions)."""
    return (LOADER_CONSTANT + rank + int(seed)) % (1 << 64)


def version_tuple(version: str) -> tuple[int, ...]:
    """``'8.3.40'`` -> ``(8, 3, 40)`` (anything after the numbers is ignored)."""
    out = []
    for part in str(version).split("."):
        digits = "".join(c for c in part if c.isdigit()) if part[:1].isdigit() else ""
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


def seeds_loader(version: str | None = None) -> bool:
    """Whether ultralytics ``version`` (default: the installed one) seeds the train loader from the training seed."""
    if version is None:
        import ultralytics

        version = ultralytics.__version__
    return version_tuple(version) >= SEEDED_SINCE


def check_ddp(device: str, version: str | None = None) -> None:
    """Refuse a multi-device (DDP) run where ultralytics seeds the train loader with a constant (one line)."""
    if "," not in str(device) or seeds_loader(version):
        return
    if version is None:
        import ultralytics

        version = ultralytics.__version__
    raise NeckError(f"ultralytics {version} seeds the training data loader with a constant, and a multi-device (DDP) "
                    f"run (device {device}) trains in processes the harness cannot reach: every seed would see the "
                    f"images in the same order. Train on one device per run, or use ultralytics >= "
                    f"{'.'.join(map(str, SEEDED_SINCE))}")


def reseed_loader(loader, seed: int, rank: int | None = None) -> bool:
    """Re-seed a train ``loader`` whose generator holds ultralytics' constant with :func:`loader_seed` of ``seed``,
    restarting an iterator the loader already started (its first permutation and worker seeds came from the
    constant). Returns whether it changed anything (False: no generator, seeded otherwise, or already the value)."""
    if rank is None:
        from ultralytics.utils import RANK as rank
    generator = getattr(loader, "generator", None)
    if generator is None or generator.initial_seed() != loader_seed(0, rank):
        return False  # not the constant: ultralytics seeded it (or a scheme of its own); leave it
    wanted = loader_seed(seed, rank)
    if wanted == generator.initial_seed():
        return False  # seed 0: the constant is already what the run seed gives
    generator.manual_seed(wanted)
    if getattr(loader, "iterator", None) is not None and hasattr(loader, "reset"):
        loader.reset()  # drawn again from the re-seeded generator: the permutation and the workers' base seed
    return True


class DataOrderSeeding:
    """The trainer callback of :func:`seed_data_order` (``on_pretrain_routine_start``); ``reseeded`` counts the
    train loaders it re-seeded."""

    def __init__(self, seed: int):
        self.seed = int(seed)
        self.reseeded = 0

    def __call__(self, trainer) -> None:
        if getattr(trainer, "_yolo_necks_seeded_loader", False):
            return  # some versions run the callback more than once
        original = trainer.get_dataloader

        def get_dataloader(*args, **kwargs):
            loader = original(*args, **kwargs)
            mode = kwargs.get("mode", args[3] if len(args) > 3 else "train")
            if mode == "train" and reseed_loader(loader, self.seed):
                self.reseeded += 1
            return loader

        trainer.get_dataloader = get_dataloader  # this trainer only: an attribute of the object, not of its class
        trainer._yolo_necks_seeded_loader = True


def seed_data_order(model, seed: int) -> DataOrderSeeding:
    """Make ``model.train`` draw the order of its training images (and its loader workers' seeds) from ``seed`` on
    every supported ultralytics: a callback on ``model`` (an ultralytics ``YOLO``), returned."""
    callback = DataOrderSeeding(seed)
    model.add_callback("on_pretrain_routine_start", callback)
    return callback
