"""Sequence: multivariate time series (sensors, ECG): built-in shapes, file loaders, encoders, views."""
from modalities.sequence import datasets, encoders, loaders, views  # noqa: F401  (registers)
