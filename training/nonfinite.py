"""Steps with a non-finite loss or gradient are skipped, counted, and stop the run when they persist.

A step whose loss (or, without a loss scaler, gradient norm) is NaN or inf
does not update the parameters: the optimizer step and the objective's
``on_step_end`` (MoCo's momentum update) are skipped; the learning-rate
schedule still advances, so the rate at step s does not depend on skips.
TensorBoard's ``train/nonfinite_steps`` is the number of skipped steps so far
in this session, logged at each skip. After ``train.max_nonfinite_in_row``
skips in a row the run stops with a ``NonFiniteError`` (``run.py`` prints it
and exits 2); no checkpoint is written during such a streak, so
``checkpoints/last.pt`` holds parameters from before it. With fp16's gradient
scaler, inf gradients are the scaler's business (it skips those steps and lowers
its scale), so only the loss is checked there.
"""
from __future__ import annotations

import math

from core.errors import UserError


class NonFiniteError(UserError, FloatingPointError):
    """The loss stayed non-finite for ``train.max_nonfinite_in_row`` steps."""


class NonFiniteGuard:
    """Counts non-finite steps; ``check`` says whether the optimizer may step."""

    def __init__(self, max_in_row: int, writer=None, check_grad_norm: bool = True, total: int = 0):
        self.max_in_row, self.writer, self.check_grad_norm = max_in_row, writer, check_grad_norm
        self.total, self.in_row = total, 0  # total: skipped steps so far, including a resumed run's

    def check(self, loss, grad_norm, step: int) -> bool:
        """True when ``loss`` (and ``grad_norm``) are finite. Otherwise counts and logs the skip and
        returns False.

        Raises:
            NonFiniteError: the ``max_in_row``-th non-finite step in a row.
        """
        loss, grad_norm = float(loss), float(grad_norm)
        if math.isfinite(loss) and (math.isfinite(grad_norm) or not self.check_grad_norm):
            self.in_row = 0
            return True
        self.total, self.in_row = self.total + 1, self.in_row + 1
        if self.writer is not None:
            self.writer.add_scalar("train/nonfinite_steps", self.total, step)
        if self.max_in_row and self.in_row >= self.max_in_row:
            if self.writer is not None:
                self.writer.flush()
            what = f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {grad_norm}"
            raise NonFiniteError(
                f"the loss or gradient was non-finite ({what}) for {self.in_row} steps in a row, up to step {step} "
                f"(parameters and checkpoints/last.pt are from before them); lower optim.lr, lengthen "
                f"optim.warmup_steps, keep train.grad_clip > 0 or use train.precision=fp32, then start again "
                f"or --resume the run with those overrides")
        return False
