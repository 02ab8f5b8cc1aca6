"""``yolo-necks edit`` and ``yolo-necks positions``: the model editor (:mod:`yolo_necks.editing`) on the command line."""

from __future__ import annotations

import sys
from pathlib import Path

from .errors import NeckConfigError

EDIT_HELP = """\
usage: yolo-necks edit MODEL insert=Block@POSITIONS [replace=Block@POSITIONS] [args=LIST] [out=FILE]

Put a block at named positions of a model YAML, rewiring every 'from' through one renumbering, and print the new
YAML (or write it to FILE). MODEL: a YAML path or a stock name (yolov8.yaml, yolo11-seg.yaml, ...).

  insert=Block@p3,p4,p5    one block after each position; every former reader of that layer reads the block
  replace=Block@sppf       the block instead of the layer (same input, repeats and unscaled channels)
  args=[3,1,32,avg]        the block's arguments after c2 (YAML: a list for every block, or {Block: [...]})
  out=FILE                 write the YAML there instead of printing it
insert and replace may be given several times. Positions (see 'yolo-necks positions MODEL'): p3..p6 (what the head
reads at that stride), backbone_p3..backbone_p5 (the backbone layer the head reads), sppf, or a layer index.

examples:
  yolo-necks positions yolov8.yaml
  yolo-necks edit yolov8.yaml insert=DyCAConv@p3,p4,p5 args=[3,1,32,avg] out=yolov8-dyca-neck.yaml
  yolo-necks edit yolo11.yaml replace=FocalModulation@sppf insert=SKConv@backbone_p3
  yolo train model=yolov8n-dyca-neck.yaml data=coco8.yaml   # the letter after 'yolov8' picks the scale"""

POSITIONS_HELP = """\
usage: yolo-necks positions MODEL [scale=LETTER]

List where a block can go in a model: the named positions (p3.. = what the head reads at that stride,
backbone_p3.. = the backbone layer the head reads, sppf), then every layer index, with the layer's module, output
stride and channels at the scale (default: the YAML's first scale). Learned by building the model, not from comments."""


def _items(argv: list[str], verb: str, allowed: tuple[str, ...], usage: str) -> tuple[str, dict[str, list[str]]]:
    """MODEL and its key=value items (each key may repeat); one-line errors."""
    first = usage.splitlines()[0]
    if not argv:
        raise NeckConfigError(f"{verb}: no MODEL given; {first}")
    model, items = argv[0], {}
    if "=" in model:
        raise NeckConfigError(f"{verb}: the first argument must be the MODEL YAML, got '{model}'; {first}")
    for item in argv[1:]:
        key, eq, value = item.partition("=")
        if not eq or key not in allowed:
            raise NeckConfigError(f"{verb}: unknown argument '{item}'; expected {', '.join(k + '=' for k in allowed)}")
        items.setdefault(key, []).append(value)
    return model, items


def _args(values: list[str] | None):
    import yaml

    if not values:
        return None
    if len(values) > 1:
        raise NeckConfigError("edit: args= is given more than once; give one list, or one mapping {Block: [...]}")
    try:
        return yaml.safe_load(values[0])
    except yaml.YAMLError as e:
        reason = " ".join(str(e).split())
        raise NeckConfigError(f"edit: args={values[0]} is not a YAML list or mapping ({reason})") from None


def edit_main(argv: list[str]) -> int:
    """``yolo-necks edit MODEL insert=... [replace=...] [args=...] [out=FILE]``."""
    from .editing import edit_yaml

    if argv and argv[0] in {"-h", "--help"}:
        print(EDIT_HELP)
        return 0
    model, items = _items(argv, "edit", ("insert", "replace", "args", "out"), EDIT_HELP)
    if len(items.get("out", [])) > 1:
        raise NeckConfigError("edit: out= is given more than once")
    text = edit_yaml(model, items.get("insert"), items.get("replace"), _args(items.get("args")))
    if "out" in items:
        out = Path(items["out"][0])
        out.write_text(text)
        print(f"{out}: written", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def positions_main(argv: list[str]) -> int:
    """``yolo-necks positions MODEL [scale=s]``: a table of name, index, module, stride, channels."""
    from .editing import positions
    from .graph import default_scale, load_model

    if argv and argv[0] in {"-h", "--help"}:
        print(POSITIONS_HELP)
        return 0
    model, items = _items(argv, "positions", ("scale",), POSITIONS_HELP)
    scale = items.get("scale", [None])[-1]
    d, where = load_model(model)
    scale = default_scale(d, where, scale)
    rows = positions(model, scale)
    print(f"# {where}" + (f" at scale {scale}" if scale else "") + ": where 'yolo-necks edit' can put a block")
    print(f"{'name':<13} {'index':>5}  {'module':<16} {'stride':>6} {'channels':>8}")
    for i, p in enumerate(rows):
        if i and p.name.isdigit() and not rows[i - 1].name.isdigit():
            print()
        print(f"{p.name:<13} {p.index:>5}  {p.module:<16} {p.stride or '-':>6} {p.channels or '-':>8}")
    return 0
