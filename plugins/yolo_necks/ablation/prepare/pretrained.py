"""Starting every arm from one pretrained checkpoint: find and hash it, measure what it fills in each arm.

ultralytics transfers a checkpoint by tensor name and shape (``DetectionModel.load``). An arm whose blocks are
*inserted* shifts the index of every later layer, so its names would pair a layer with another layer's weights (or
miss them); for such an arm the checkpoint is renumbered through the arm's layer index map first
(:func:`renumbered`, :func:`remap_checkpoint`): every base layer's weights land on the same layer of the arm, and the
inserted blocks start from scratch.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from ...errors import NeckConfigError, one_line
from .plan import file_sha
from ..spec.load import Spec
from .variants import ArmModel

MIN_TRANSFER = 0.5  # a pretrained checkpoint must fill at least this share of an arm's tensors


@dataclass
class Transfer:
    """What a checkpoint fills in one arm's model: tensors loaded of tensors in the model, and the layers whose
    tensors (all, or some: 'partial') start from scratch."""

    loaded: int
    total: int
    scratch: list[str]

    @property
    def text(self) -> str:
        return f"{self.loaded}/{self.total}"

    @property
    def fraction(self) -> float:
        return self.loaded / self.total if self.total else 0.0


def resolve_checkpoint(spec: Spec) -> tuple[str, str]:
    """(local path, full sha256) of the spec's pretrained checkpoint; a weights name is fetched by ultralytics."""
    given = str(spec.pretrained)
    path = Path(given).expanduser()
    bare = not path.is_file() and not path.is_absolute() and path.parent == Path(".")
    if bare:  # a weights name: ultralytics fetches its own release assets (yolov8n.pt, ...) where online
        from ultralytics.utils.downloads import attempt_download_asset

        try:
            path = Path(attempt_download_asset(given))
        except Exception as e:
            raise NeckConfigError(f"{spec.source}: key 'pretrained': '{given}' is not a file here and could not be "
                                  f"downloaded ({one_line(e)})") from None
    if not path.is_file():
        how = " nor weights ultralytics could download (offline, or not one of its weights names)" if bare else ""
        raise NeckConfigError(f"{spec.source}: key 'pretrained': checkpoint '{given}' not found (not a file here"
                              f"{how})")
    return str(path.resolve()), file_sha(path, None)


def measure_transfer(checkpoint: str, models: list[ArmModel], spec: Spec) -> dict[str, Transfer]:
    """Load the checkpoint into every arm's model with ultralytics' own transfer (``DetectionModel.load``: tensors
    matched by name and shape, the class branch rebuilt at the source width) and count the tensors that now hold the
    checkpoint's values. An arm filled less than :data:`MIN_TRANSFER` is refused."""
    import torch
    from ultralytics.nn.tasks import DetectionModel, load_checkpoint

    try:
        checkpoint_model, _ = load_checkpoint(checkpoint)
    except Exception as e:
        raise NeckConfigError(f"{spec.source}: key 'pretrained': cannot load '{checkpoint}' ({one_line(e)})") from None
    out = {}
    for m in models:
        weights = renumbered(checkpoint_model, m.index_map) if m.index_map else checkpoint_model
        src = {k: v.float() for k, v in weights.float().state_dict().items()}
        d = copy.deepcopy(m.model_dict)
        d["yaml_file"] = m.file_name
        net = DetectionModel(d, ch=3, nc=d.get("nc"), verbose=False)
        net.load(weights, verbose=False)
        sd = net.state_dict()
        loaded, partial, total = 0, {}, len(sd)
        for k, v in sd.items():
            layer = k.split(".")[1] if k.startswith("model.") else k
            hit = k in src and src[k].shape == v.shape and torch.equal(src[k], v.float())
            loaded += hit
            partial.setdefault(layer, []).append(hit)
        scratch = []
        for layer, hits in partial.items():
            if not all(hits):
                name = type(net.model[int(layer)]).__name__ if layer.isdigit() else layer
                scratch.append(f"{layer} {name}" + ("" if not any(hits) else " (partial)"))
        t = Transfer(loaded, total, scratch)
        if t.fraction < MIN_TRANSFER:
            raise NeckConfigError(
                f"{spec.source}: key 'pretrained': '{Path(checkpoint).name}' fills only {t.text} tensors "
                f"({100 * t.fraction:.0f}%) of arm '{m.arm.name}'; its base architecture does not match the sweep's "
                f"model '{Path(spec.model).name}' scale {m.scale} (at least {MIN_TRANSFER:.0%} must transfer)"
            )
        out[m.arm.name] = t
        del net
    return out


# ---------------------------------------------------------------------------------------------------- prepare


def renumbered(model, index_map: dict[int, int]):
    """A copy of a loaded checkpoint model whose layers sit at the arm's indices (``index_map``: base layer -> arm
    layer); the arm's inserted layers are parameter-free placeholders, so nothing transfers into them. Only its
    ``state_dict`` is used (the copy does not run)."""
    import torch.nn as nn

    out = copy.deepcopy(model)
    layers = list(out.model)
    size = max(index_map.values()) + 1 + (len(layers) - 1 - max(index_map))
    new: list[nn.Module] = [nn.Identity() for _ in range(size)]
    for old, i in index_map.items():
        if old < len(layers):
            new[i] = layers[old]
    out.model = nn.Sequential(*new)
    return out


def remap_checkpoint(checkpoint: str, index_map: dict[int, int], out: Path) -> str:
    """Write the checkpoint renumbered for an arm with inserted blocks to ``out``; return its path (the run's
    ``pretrained``). Deterministic: the same checkpoint and map give the same tensors."""
    import torch
    from ultralytics.nn.tasks import load_checkpoint

    model, ckpt = load_checkpoint(checkpoint)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": renumbered(model, index_map), "train_args": ckpt.get("train_args", {})}, out)
    return str(out)
