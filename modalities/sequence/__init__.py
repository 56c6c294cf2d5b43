"""Sequence: multivariate time series (sensors, ECG): built-in shapes, file loaders, encoders, views."""
from modalities.sequence import datasets, encoders, loaders, ts2vec_encoder, views  # noqa: F401  (registers)
