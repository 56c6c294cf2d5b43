"""Every objective module; importing this registers them.

One module per objective (its paper in the docstring), ``functional`` (the losses as
functions of tensors), ``parts`` (encode a batch, projection heads), ``paired`` (the shape
of the signal-text objectives), ``tiled`` (memory-bounded losses) and ``distributed``
(gathering across ranks).

May import only the bottom layer (``config``, ``registry``, ``errors``, ``notes``,
``process_group``); never ``modalities`` or anything above (checked by import-linter).
"""
from objectives import cpc  # noqa: F401
from objectives import ce, clap, convirt, moco, siglip, simclr, supcon, triplet, vicreg  # noqa: F401
from objectives import barlow_twins, byol, dcl, dino, siamese, simcse, simsiam, ts2vec  # noqa: F401
