"""Every objective module; importing this registers them."""
from objectives import cpc  # noqa: F401
from objectives import ce, clap, convirt, moco, siglip, simclr, supcon, triplet, vicreg  # noqa: F401
