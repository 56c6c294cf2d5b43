"""Every objective module; importing this registers them."""
from objectives import cpc  # noqa: F401
