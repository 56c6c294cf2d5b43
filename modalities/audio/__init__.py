"""Audio: raw-waveform and log-mel encoders, built-in sound events, file loaders, views."""
from modalities.audio import datasets, encoders, loaders, logmel, views  # noqa: F401  (registers)
