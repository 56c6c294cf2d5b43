"""train.precision and the speed switches on the CPU: bf16 autocast trains, fp16 is refused."""
from __future__ import annotations

import math

import pytest
import torch
from conftest import TINY, run_cli
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from core import config as config_lib
import modalities  # noqa: F401  (registers encoders, datasets, views)
import objectives  # noqa: F401  (registers objectives)
from core.errors import UserError
from experiment import run_experiment
from training.precision import autocast_dtype, use_channels_last

TINY_RUN = [*TINY["sequence"], "train.steps=3", "train.batch_size=8", "train.val_every=0", "train.progress=false", "eval.probe_epochs=2",
            "device='cpu'"]


def losses(tmp_path, precision: str) -> list[float]:
    cfg = config_lib.load_config("sequence", "cpc", None, [*TINY_RUN, f"train.precision={precision!r}"])
    run_experiment(cfg, tmp_path / precision)
    events = EventAccumulator(str(tmp_path / precision))
    events.Reload()
    return [e.value for e in events.Scalars("train/loss")]


@pytest.mark.skipif(not torch.amp.autocast_mode.is_autocast_available("cpu"), reason="no CPU autocast")
def test_bf16_autocast_trains_on_cpu_close_to_fp32(tmp_path):
    fp32, bf16 = losses(tmp_path, "fp32"), losses(tmp_path, "bf16")
    assert len(bf16) == 3 and all(math.isfinite(v) for v in bf16)
    # Same initial weights and batch: the first losses agree to bf16's ~3 significant digits,
    # and differ at all only because the encoder really ran in bfloat16.
    assert 0 < abs(bf16[0] - fp32[0]) < 3e-2 * abs(fp32[0])


def test_precision_resolution():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("fp32", cuda) is None
    assert autocast_dtype("bf16", cpu) is torch.bfloat16
    with pytest.raises(UserError, match="needs a CUDA device"):
        autocast_dtype("fp16", cpu)
    with pytest.raises(UserError, match="must be one of"):
        autocast_dtype("fp8", cpu)
    conv2d, conv1d = torch.nn.Conv2d(1, 2, 3), torch.nn.Conv1d(1, 2, 3)
    assert use_channels_last("auto", cuda, conv2d) and not use_channels_last("auto", cuda, conv1d)
    assert not use_channels_last("auto", cpu, conv2d) and use_channels_last("always", cpu, conv1d)


def test_fp16_on_cpu_is_one_clear_error(tmp_path):
    done = run_cli("--modality", "sequence", "--objective", "cpc", "--run-dir", tmp_path / "run", *TINY_RUN,
                   "train.precision='fp16'")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: train.precision=fp16 needs a CUDA device")
    assert not (tmp_path / "run").exists()


def test_deterministic_pins_one_cpu_thread_and_says_so(capsys):
    """With two threads, MKL's kernels may change the last bits from run to run; train.deterministic
    trades them for one thread on CPU, and leaves the thread count alone when off."""
    from core import notes
    from training.precision import set_deterministic
    before = torch.get_num_threads()
    notes._said.clear()
    try:
        torch.set_num_threads(2)
        set_deterministic(False, torch.device("cpu"))
        assert torch.get_num_threads() == 2
        assert not torch.are_deterministic_algorithms_enabled()
        set_deterministic(True, torch.device("cpu"))
        assert torch.get_num_threads() == 1
        assert torch.are_deterministic_algorithms_enabled()
        assert "one CPU thread instead of 2" in capsys.readouterr().err
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(before)
