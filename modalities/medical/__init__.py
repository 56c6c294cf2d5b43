"""Medical images (2D and 3D): built-in image-report findings, MONAI encoders, batched views, file manifests."""
from modalities.medical import datasets, encoders, loaders, views  # noqa: F401  (registers)
