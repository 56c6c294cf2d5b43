"""The x encoder as a ``torch.export`` program: x (B, *input_shape) -> embedding (B, D), B dynamic.

The program holds the graph and the weights, no Python code of this project: load it with
``torch.export.load(path).module()`` anywhere torch runs. It takes no padding mask (series of one
fixed length, as ``preprocess`` makes them).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn


class EmbeddingOf(nn.Module):
    """``encoder(x)["embedding"]``: the one output a program returns."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)["embedding"]


def export_program(encoder: nn.Module, input_shape, path: Path) -> str | None:
    """Write the program of ``encoder`` (in eval mode, on the CPU) to ``path``; None when written,
    else one line saying why ``torch.export`` failed (nothing is written then).

    The program is checked on a batch of another size than the one it was traced with: its
    embedding must equal the module's (to 1e-5), else that is the reason returned.
    """
    module = EmbeddingOf(encoder).eval()
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(2, *input_shape, generator=generator)
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    try:
        with warnings.catch_warnings():  # nn.GRU's flat weights: a notice about tracing, not an error
            warnings.filterwarnings("ignore", message=".*were assigned during export.*")
            program = torch.export.export(module, (example,), dynamic_shapes={"x": {0: batch}})
        check = torch.randn(3, *input_shape, generator=generator)
        with torch.no_grad():
            gap = (program.module()(check) - module(check)).abs().max().item()
        if not gap <= 1e-5:
            return f"the exported program differs from the encoder by {gap:.2g}"
        torch.export.save(program, str(path))
    except Exception as err:  # noqa: BLE001  (torch.export raises many types for unsupported code)
        Path(path).unlink(missing_ok=True)
        return f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"[:300]
    return None
