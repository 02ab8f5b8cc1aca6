"""Model editing: put a block at named positions of a model YAML, with exact rewiring. YAML dict -> YAML dict.

::

    edit("yolov8.yaml", insert="DyCAConv@p3,p4,p5", args=[3, 1, 32, "avg"])   # a block in front of each head input
    edit("yolo11.yaml", replace="FocalModulation@sppf")                      # a block instead of a layer
    positions("yolov8.yaml")                                                 # what the names mean for this model

Positions come from the model itself, never from comments: the base model is built once per scale (on the ``meta``
device: no weight memory, fast at any scale; a real CPU build if that fails) and a forward pass records each layer's
output shape. Names:

- ``p2`` .. ``p6``: the layer the head (the last layer whose ``from`` is a list: Detect, Segment, Pose, OBB, ...)
  reads at stride 4 .. 64;
- ``backbone_p2`` .. ``backbone_p6``: the backbone layer at that stride that the head section reads (by absolute index
  or by a head row's relative ``from`` reaching back into the backbone); the last one if several;
- ``sppf``: the SPPF or SPP layer, if there is exactly one;
- an integer: that layer index of the base YAML (any layer before the head with one feature map as output).

Inserting after layer ``L`` splices the block onto the edge: the new row ``[-1, 1, Block, [c2, *args]]`` comes right
after ``L`` in ``L``'s section and reads ``L``; every layer that read ``L`` (absolute, relative, in lists, the head's
list included) reads the block instead; every other ``from`` points at the same layer as before. All edits of one call
go through one map old index -> new index: negative ``from``\\ s are made absolute, mapped, and written back as ``-1``
where they mean the previous layer (other original negatives become absolute indices); absolute ones stay absolute.
``c2`` is the *unscaled* channel count of ``L`` (its ``args[0]`` for channel-setting modules such as Conv, C2f, SPPF),
so width scaling and ``max_channels`` apply to the block exactly as to the built-ins. A replacement keeps the replaced
row's ``from`` and repeats and takes its unscaled channels as ``c2``. An edit whose block would change the channels or
the resolution at its place, at any of the YAML's scales, is refused (checked on the block alone).
"""

from __future__ import annotations

import copy
import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from .errors import NeckConfigError, one_line
from .graph import Layers, absolute, clean, default_scale, load_model, model_layers, named_positions, scale_names
from .yamltext import flow, plain, render_yaml


@dataclass(frozen=True)
class Position:
    """A place a block can go: its name, the base layer index, that layer's module, output stride and channels."""

    name: str
    index: int
    module: str
    stride: int | None
    channels: int | None


@dataclass(frozen=True)
class Edit:
    """One resolved edit: ``kind`` insert or replace, the block, the position as given, the base layer index."""

    kind: str
    block: str
    position: str
    index: int
    row: list
    with_c2: bool = True  # whether row args[0] is the block's c2 (channel-setting modules) or args as given


class EditResult(NamedTuple):
    """An edited model: its YAML dict, the map base layer index -> new index, the new indices of inserted rows."""

    model: dict
    index_map: dict[int, int]
    inserted: list[int]


def positions(model, scale=None) -> list[Position]:
    """The named positions of ``model`` (``p3``, ``backbone_p5``, ``sppf``, ...), then every layer index a block can
    follow, with module, output stride and channels at ``scale`` (default: the YAML's scale, else its first)."""
    d, where = load_model(model)
    info = model_layers(d, where, default_scale(d, where, scale))
    out = [
        Position(name, i, info.rows[i][2], info.stride(i), info.channels(i))
        for name, i in named_positions(info).items()
    ]
    out += [
        Position(str(i), i, info.rows[i][2], info.stride(i), info.channels(i))
        for i in range(info.head)
        if info.shapes[i] is not None
    ]
    return out


# ---------------------------------------------------------------------------------------------- parsing edits
def parse_edits(spec, kind: str, where: str) -> list[tuple[str, list[str]]]:
    """``"Block@p3,p4"`` (or a list of such strings) -> ``[("Block", ["p3", "p4"])]``."""
    if spec is None:
        return []
    items = [spec] if isinstance(spec, str) else spec
    if not isinstance(items, (list, tuple)):
        raise NeckConfigError(f"{where}: {kind} must be 'Block@position[,position...]' or a list of them, got {spec!r}")
    out = []
    for item in items:
        if not isinstance(item, str):
            raise NeckConfigError(f"{where}: {kind} {item!r} is not a string; expected e.g. 'DyCAConv@p3,p4,p5'")
        text = "".join(item.split())
        if text.count("@") != 1:
            what = "has no '@position'" if "@" not in text else "has several '@'"
            raise NeckConfigError(f"{where}: {kind} '{item}' {what}; expected 'Block@position[,position...]' such as "
                                  "'DyCAConv@p3,p4,p5'")
        block, _, places = text.partition("@")
        names = places.split(",")
        if not block:
            raise NeckConfigError(f"{where}: {kind} '{item}' names no block before '@'; expected e.g. 'DyCAConv@p3'")
        if not places or not all(names):
            raise NeckConfigError(f"{where}: {kind} '{item}' has an empty position; expected names such as 'p3,p4,p5'")
        out.append((block, names))
    return out


def _known_block(name: str, ctx: str):
    """The class a block name builds (a registered block or an ultralytics/torch module); else a one-line error."""
    import ultralytics.nn.tasks as tasks

    from .registry import register
    from .validate import known_names as _known_names
    from .validate import resolve_module as _resolve

    blocks = register()
    cls = _resolve(name, tasks)
    if cls is None:
        close = difflib.get_close_matches(name, _known_names(tasks), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise NeckConfigError(f"{ctx}: unknown block '{name}'{hint} (yolo-necks blocks: "
                              f"{', '.join(sorted(blocks))}; or an ultralytics module such as SPPF)")
    return cls


def _takes_c2(name: str, cls) -> bool:
    """Whether the parser gives this module ``c1`` and a scaled ``args[0]`` (registered blocks, Conv, C2f, SPPF...)."""
    from .catalog import registered_blocks
    from .validate import takes_channels as _takes_channels

    return name in registered_blocks() or (not name.startswith(("nn.", "torchvision.")) and _takes_channels(cls))


def _resolve_position(token: str, info: Layers, names: dict, where: str, kind: str, block: str) -> int:
    if token.lstrip("-").isdigit():
        i = int(token)
        if not 0 <= i < info.head:
            raise NeckConfigError(f"{where}: {kind} {block}@{token}: layer index {i} is out of range; a block can "
                                  f"follow layers 0..{info.head - 1} (layer {info.head} is the head)")
        if info.shapes[i] is None:
            raise NeckConfigError(f"{where}: {kind} {block}@{token}: layer {i} ({info.rows[i][2]}) does not output "
                                  "one feature map")
        return i
    if token.lower() in names:
        return names[token.lower()]
    why = " (it has no single SPPF or SPP layer)" if token.lower() == "sppf" else ""
    raise NeckConfigError(f"{where}: {kind} {block}@{token}: unknown position '{token}'{why}; valid for this model: "
                          f"{', '.join(names)} or a layer index 0..{info.head - 1}")


def _block_args(args, blocks: list[str], where: str) -> dict[str, list]:
    if args is None:
        return {b: [] for b in blocks}
    if isinstance(args, (list, tuple)):
        return {b: plain(list(args)) for b in blocks}
    if isinstance(args, dict):
        extra = [k for k in args if k not in blocks]
        if extra:
            raise NeckConfigError(f"{where}: args given for {', '.join(map(str, extra))}, which no edit uses "
                                  f"(blocks edited: {', '.join(dict.fromkeys(blocks))})")
        bad = [k for k, v in args.items() if not isinstance(v, (list, tuple))]
        if bad:
            raise NeckConfigError(f"{where}: args for {bad[0]} must be a list, got {args[bad[0]]!r}")
        return {b: plain(list(args.get(b, []))) for b in blocks}
    raise NeckConfigError(f"{where}: args must be a list (for every block) or a mapping {{block: list}}, got {args!r}")


def _unscaled_channels(d: dict, where: str, i: int, info: Layers):
    """The channel count to write as a block's ``c2`` next to layer ``i``: its ``args[0]`` for a channel-setting
    module, else what the parser gives it at width 1 without a channel cap."""
    from .validate import literal as _literal

    row = info.rows[i]
    if _sets_channels(row):
        return _literal(row[3][0])
    return model_layers(d, where, scale_names(d)[0], unit=True).channels(i)


def _sets_channels(row: list) -> bool:
    """Whether a YAML row's ``args[0]`` is its (unscaled) output channel count."""
    import ultralytics.nn.tasks as tasks

    from .validate import is_int as _is_int, literal as _literal, resolve_module as _resolve

    _, _, m, args = row
    c2 = _literal(args[0]) if args else None
    return _is_int(c2) and c2 > 0 and _takes_c2(m, _resolve(m, tasks))


# ------------------------------------------------------------------------------------- one block, checked alone
def shape_text(shape) -> str:
    return "x".join(map(str, shape[1:]))


def _scale_keys(d: dict, scale) -> dict:
    """The keys the parser reads besides the rows, at one scale."""
    keys = {k: d[k] for k in ("nc", "activation", "reg_max", "kpt_shape", "depth_multiple", "width_multiple") if k in d}
    if scale is not None:
        keys.update(scales={scale: d["scales"][scale]}, scale=scale)
    return keys


def _scaled_c2(c2: int, d: dict, scale) -> int:
    """``c2`` as the parser scales a channel-setting module's ``args[0]``: width multiple, then ``max_channels``."""
    from ultralytics.nn.tasks import make_divisible

    if scale is None:
        width, cap = d.get("width_multiple", 1.0), math.inf
    else:
        _, width, cap = d["scales"][scale]
    return make_divisible(min(c2, cap) * width, 8)


_TINY = "<block alone>"  # the file name of the one-row model a block is checked in (cut from its messages)


def _run_block(row: list, in_shape: tuple, d: dict, scale, ctx: str) -> tuple:
    """Build ``row`` alone as the parser builds it at ``scale`` (``c1`` = the channels of ``in_shape``) and return
    the shape it outputs for an input of ``in_shape`` (meta device; real CPU tensors if an op has no meta kernel)."""
    import torch
    import ultralytics.nn.tasks as tasks

    tiny = {**_scale_keys(d, scale), "backbone": [[-1, row[1], row[2], row[3]]], "head": [], "yaml_file": _TINY}

    def run(device: str):
        with torch.random.fork_rng(devices=[]), torch.no_grad(), torch.device(device):
            layers, _ = tasks.parse_model(copy.deepcopy(tiny), in_shape[1], False)
            return layers[0](torch.zeros(in_shape))

    try:
        out = run("meta")
    except Exception:
        try:
            out = run("cpu")
        except Exception as e:
            reason = one_line(e, 300).removeprefix(f"{_TINY}: layer 0 ({row[2]}): ").removeprefix(f"{_TINY}: ")
            raise NeckConfigError(f"{ctx}: {row[2]} does not build or run on the {shape_text(in_shape)} map it would "
                                  f"read{_at(scale)} ({reason})") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 4:
        raise NeckConfigError(f"{ctx}: {row[2]} does not output one feature map (got {type(out).__name__})")
    return tuple(out.shape)


def _at(scale) -> str:
    return f" at scale {scale}" if scale is not None else ""


def _channels_error(e: Edit, ctx: str, place: str, scale, want: int, got: int, c2, info: Layers) -> NeckConfigError:
    why = f"; its c2 {e.row[3][0]} scales to {c2}{_at(scale)}" if c2 is not None else ""
    if c2 is not None and not _sets_channels(info.rows[e.index]):
        m = info.rows[e.index][2]
        why += f" (no c2 gives {m}'s channels at every scale: choose a channel-setting layer such as C2f)"
    return NeckConfigError(f"{ctx}: {e.block} would change the channels {place}{_at(scale)}: expected {want}, got {got}"
                           f"{why}")


def _check_shapes(e: Edit, d: dict, where: str) -> None:
    """Refuse an edit whose block changes the channels or the resolution at its place, at any scale of the YAML."""
    ctx = f"{where}: {e.kind} {e.block}@{e.position}"
    for scale in scale_names(d):
        info = model_layers(d, where, scale)
        m = info.rows[e.index][2]
        place = f"after layer {e.index} ({m})" if e.kind == "insert" else f"in place of layer {e.index} ({m})"
        src = e.index if e.kind == "insert" else absolute(info.rows[e.index][0], e.index)
        in_shape, want = info.image if src < 0 else info.shapes[src], info.shapes[e.index]
        if in_shape is None:
            raise NeckConfigError(f"{ctx}: layer {e.index} ({m}) reads layer {src}, which does not output one map")

        c2 = _scaled_c2(e.row[3][0], d, scale) if e.with_c2 else None
        if c2 is not None and c2 != want[1]:  # known before building: the parser gives the block this c2
            raise _channels_error(e, ctx, place, scale, want[1], c2, c2, info)
        got = _run_block(e.row, in_shape, d, scale, ctx)
        if got[1] != want[1]:
            raise _channels_error(e, ctx, place, scale, want[1], got[1], c2, info)
        if got[2:] != want[2:]:
            raise NeckConfigError(f"{ctx}: {e.block} would change the stride {place}: expected {want[2]}x{want[3]} "
                                  f"(stride {info.stride(e.index)}), got {got[2]}x{got[3]} (stride "
                                  f"{info.image[2] / got[2]:g})")


# ------------------------------------------------------------------------------------------------ the editing
def _rewire(d: dict, edits: list[Edit]) -> EditResult:
    """The base graph with every insert spliced in after its layer and every replace in place, through one map."""
    from .validate import is_int as _is_int

    rows, nb = d["backbone"] + d["head"], len(d["backbone"])
    after = {e.index: e for e in edits if e.kind == "insert"}
    instead = {e.index: e for e in edits if e.kind == "replace"}
    new_of, block_of, j = {}, {}, 0
    for g in range(len(rows)):
        new_of[g], j = j, j + 1
        if g in after:
            block_of[g], j = j, j + 1
    reads = {g: block_of.get(g, new_of[g]) for g in range(len(rows))}  # what a former reader of g reads now

    def one(x, g: int):
        if not _is_int(x) or (g == 0 and x < 0):
            return x  # layer 0's -1 is the image
        t = reads[absolute(x, g)]
        return -1 if x < 0 and t == new_of[g] - 1 else t

    out = {"backbone": [], "head": []}
    for g, row in enumerate(rows):
        f, n, m, args = instead[g].row if g in instead else row
        section = out["backbone" if g < nb else "head"]
        section.append([[one(x, g) for x in f] if isinstance(f, list) else one(f, g), n, m, copy.deepcopy(args)])
        if g in after:
            section.append(copy.deepcopy(after[g].row))
    model = {**clean(d), **out}
    return EditResult(model, new_of, sorted(block_of.values()))


def _plan(model, insert, replace, args) -> tuple[dict, str, list[Edit]]:
    """Load the model and resolve every edit to a base layer and a new row (one-line errors, nothing built twice)."""
    d, where = load_model(model)
    wanted = [("insert", b, t) for b, t in parse_edits(insert, "insert", where)]
    wanted += [("replace", b, t) for b, t in parse_edits(replace, "replace", where)]
    if not wanted:
        raise NeckConfigError(f"{where}: nothing to edit; give insert='Block@positions' and/or replace='Block@positions'")
    classes = {b: _known_block(b, f"{where}: {kind} {b}@{','.join(t)}") for kind, b, t in wanted}
    per_block = _block_args(args, [b for _, b, _ in wanted], where)
    info = model_layers(d, where, default_scale(d, where))
    names = named_positions(info)
    edits, seen = [], {}
    for kind, block, tokens in wanted:
        for token in tokens:
            i = _resolve_position(token, info, names, where, kind, block)
            this = f"'{kind} {block}@{token}'"
            if i in seen:
                raise NeckConfigError(f"{where}: edits collide: {seen[i]} and {this} are both layer {i} "
                                      f"({info.rows[i][2]}); give each layer one edit")
            seen[i] = this
            f, n, m, _ = info.rows[i]
            if kind == "replace" and isinstance(f, list):
                raise NeckConfigError(f"{where}: replace {block}@{token}: layer {i} ({m}) reads several layers "
                                      f"{f}; a block replaces a layer with one input")
            a, with_c2 = per_block[block], _takes_c2(block, classes[block])
            rest = [_unscaled_channels(d, where, i, info), *a] if with_c2 else a
            row = [-1, 1, block, rest] if kind == "insert" else [f, n, block, rest]
            edits.append(Edit(kind, block, token, i, row, with_c2))
    return d, where, edits


def _validate(result: EditResult, edits: list[Edit], where: str) -> None:
    from .validate import validate_layer, validate_model_dict

    rows = result.model["backbone"] + result.model["head"]
    for e in edits:
        j = result.index_map[e.index] + (1 if e.kind == "insert" else 0)
        validate_layer(j, rows[j], f"{where}: {e.kind} {e.block}@{e.position}")
    validate_model_dict({**result.model, "yaml_file": where})


def _edit(model, insert=None, replace=None, args=None) -> tuple[EditResult, list[Edit], dict, str]:
    d, where, edits = _plan(model, insert, replace, args)
    result = _rewire(d, edits)
    _validate(result, edits, where)
    for e in edits:
        _check_shapes(e, d, where)
    return result, edits, d, where


def edit_with_map(model, insert=None, replace=None, args=None) -> EditResult:
    """Like :func:`edit`; also the map base layer index -> new index and the new indices of the inserted rows."""
    return _edit(model, insert, replace, args)[0]


def edit(model, insert=None, replace=None, args=None) -> dict:
    """Insert blocks after named positions and/or replace layers of a model YAML; return the new YAML dict.

    Args:
        model: a YAML path, a stock name (``yolov8.yaml``, ``yolo11-seg.yaml``) or a model dict.
        insert: ``"Block@p3,p4,p5"`` (one block after each position) or a list of such strings.
        replace: ``"Block@sppf"`` (the block instead of the layer) or a list of such strings.
        args: the block's arguments after ``c2``: a list for every edited block, or ``{block name: list}``.

    All edits are applied through one renumbering (see the module docstring); positions are listed by
    :func:`positions`. Raises :class:`~yolo_necks.errors.NeckConfigError` (one line) for an unknown position, block or
    argument, colliding edits, or a block that would change the channels or the stride where it goes.
    """
    return _edit(model, insert, replace, args)[0].model


def _as_list(spec) -> list:
    return [] if spec is None else [spec] if isinstance(spec, str) else list(spec)


def edit_yaml(model, insert=None, replace=None, args=None) -> str:
    """The edited model as YAML text, with a header naming the base and the edits and each row's index."""
    result, edits, d, where = _edit(model, insert, replace, args)
    info = model_layers(d, where, default_scale(d, where))
    base = Path(where).name if where != "model YAML" else where
    asked = [f"{k}={v}" for k, spec in (("insert", insert), ("replace", replace)) for v in _as_list(spec)]
    asked += [f"args={flow(args)}"] if args is not None else []
    header = [f"yolo-necks edit of {base}: {' '.join(asked)}"]
    comments = {j: str(j) for j in range(len(result.model["backbone"]) + len(result.model["head"]))}
    for e in edits:
        m, stride = info.rows[e.index][2], info.stride(e.index)
        m += "" if e.position == str(e.index) else f", {e.position}"
        if e.kind == "insert":
            j = result.index_map[e.index] + 1
            header.append(f"layer {j}: {e.block} inserted after base layer {e.index} ({m}, stride {stride})")
            comments[j] = f"{j} <- inserted: {e.block}@{e.position}"
        else:
            j = result.index_map[e.index]
            header.append(f"layer {j}: {e.block} replaces base layer {e.index} ({m}, stride {stride})")
            comments[j] = f"{j} <- replaced: {e.block}@{e.position} (was {info.rows[e.index][2]})"
    header += [
        "Every layer that read a layer followed by an inserted block reads that block; every other 'from' points at",
        "the same layer as before. The letter after the version in the file name picks the scale (yolov8n-...: n).",
    ]
    return render_yaml(result.model, header, comments)
