"""yolo-necks: multi-scale neck blocks as first-class Ultralytics YOLO modules, and an ablation harness.

Public API::

    import yolo_necks
    yolo_necks.register()                      # make the blocks usable by name in model YAMLs (idempotent)
    yolo_necks.FocalModulation(256, 256)       # the blocks themselves, ultralytics (c1, c2, *args) signature
    yolo_necks.accelerate(model)               # exact faster equivalents of SPP/SPPF, in place
    yolo_necks.edit("yolov8.yaml", insert="DyCAConv@p3,p4,p5")   # a model YAML dict with blocks at named positions
    yolo_necks.positions("yolov8.yaml")        # what those names mean for a model: index, module, stride, channels

    @yolo_necks.register_block                 # make your own block usable by name
    class MyNeck(torch.nn.Module): ...
"""

from __future__ import annotations

from ._lazy import lazy_attributes

__version__ = "0.2.0"

# name -> module that defines it; imported on first access so `import yolo_necks` stays light.
_LAZY = {
    "register": "yolo_necks.registry",
    "register_block": "yolo_necks.registry",
    "registered_blocks": "yolo_necks.registry",
    "unregister_block": "yolo_necks.registry",
    "FocalModulation": "yolo_necks.blocks",
    "DyCAConv": "yolo_necks.blocks",
    "SKConv": "yolo_necks.blocks",
    "PyramidPool": "yolo_necks.blocks",
    "spp_vector": "yolo_necks.blocks",
    "accelerate": "yolo_necks.fast",
    "FastSPPF": "yolo_necks.fast",
    "FastSPP": "yolo_necks.fast",
    "edit": "yolo_necks.editing",
    "edit_with_map": "yolo_necks.editing",
    "positions": "yolo_necks.editing",
}

__all__ = ["__version__", *_LAZY]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
