"""Audio: raw-waveform encoders, built-in sound events, file loaders."""
from modalities.audio import datasets, encoders  # noqa: F401  (registers)
