"""The uniform average of the encoders' weights over a run (``train.average_weights``).

TS2Vec's reference code (Yue et al. 2022) trains one encoder and evaluates another: a
``torch.optim.swa_utils.AveragedModel`` of it, updated after every optimizer step, whose first
member is the initial weights. This is that average (Polyak-Ruppert averaging; SWA, Izmailov et
al. 2018, arXiv 1803.05407, averages the same way from a later start): after step k of K the
average holds (w_0 + w_1 + ... + w_k) / (k + 1) for every parameter and floating buffer (BatchNorm
running statistics averaged too; ``use_buffers``). At the end of the run the loop copies it into
the encoders, so what is validated at the last step, evaluated, checkpointed, embedded and exported
is the average; checkpoints before the end hold the trained weights and the average beside them
(``weight_average``), so a resumed run goes on with both.

Only the encoders are averaged (the x encoder and, for paired objectives, the text encoder): the
objective's heads are not evaluated.
"""
from __future__ import annotations

from torch import nn
from torch.optim.swa_utils import AveragedModel


class WeightAverage:
    """Running uniform average of ``encoders`` (an ``nn.ModuleDict``), the initial weights counted."""

    def __init__(self, encoders: nn.Module):
        self.average = AveragedModel(encoders, use_buffers=True)
        self.average.update_parameters(encoders)  # w_0: the init is the first member, as TS2Vec's reference

    @property
    def members(self) -> int:
        """How many weight states the average holds (1 + optimizer steps taken)."""
        return int(self.average.n_averaged)

    def update(self, encoders: nn.Module) -> None:
        """Add the encoders' current weights (after an optimizer step)."""
        self.average.update_parameters(encoders)

    def copy_to(self, encoders: nn.Module) -> None:
        """Overwrite the encoders' parameters and floating buffers with the average (integer buffers,
        BatchNorm's batch counts, stay the encoders' own: an average of counts means nothing)."""
        current = encoders.state_dict()
        encoders.load_state_dict({key: value if value.is_floating_point() else current[key]
                                  for key, value in self.average.module.state_dict().items()})

    def state_dict(self) -> dict:
        return self.average.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.average.load_state_dict(state)
