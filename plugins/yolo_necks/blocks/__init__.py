"""The built-in neck blocks. Each takes ultralytics' ``(c1, c2, *args)`` signature.

- :class:`FocalModulation`: FocalNet's focal modulation (Yang et al., NeurIPS 2022).
- :class:`DyCAConv`: coordinate attention with softmax-mixed H/W maps, then a conv (Hou et al., CVPR 2021).
- :class:`SKConv`: selective kernel convolution (Li et al., CVPR 2019).
- :class:`PyramidPool`: spatial pyramid pooling fused back at full resolution (He et al., ECCV 2014).
- :func:`spp_vector`: SPP-net's fixed-length pyramid vector for any input size.

Plain reference formulations of every block's forward live in :mod:`yolo_necks.reference`.
"""

from .dyca import DyCAConv
from .focal import FocalModulation
from .pooling import spp_vector
from .pyramid import PyramidPool
from .sk import SKConv

BUILTIN_BLOCKS = (FocalModulation, DyCAConv, SKConv, PyramidPool)

__all__ = ["BUILTIN_BLOCKS", "DyCAConv", "FocalModulation", "PyramidPool", "SKConv", "spp_vector"]
