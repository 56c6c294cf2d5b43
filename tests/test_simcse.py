"""SimCSE (Gao et al. 2021) and the encoders' dropout options it relies on.

Real encoders, built small: the two passes differ exactly when dropout is on, the loss of
identical passes is an InfoNCE computed by hand, a missing dropout is one sentence naming the
key that enables it, and the new ``dropout`` options of the audio and medical encoders change
training outputs only (p = 0: the same numbers and no random draw).
"""
import copy
import math

import pytest
import torch
from conftest import TINY
from torch import nn

import modalities  # noqa: F401  (registers every encoder)
import objectives  # noqa: F401
from core import config as config_lib
from core import registry
from core.errors import UserError
from objectives.simcse import SimCSE, applies_dropout
from training.build import build_encoder, build_objective

torch.set_num_threads(1)

# Encoders whose dropout option is new, with tiny sizes and an input of their modality.
NEW_DROPOUT = [
    ("cpc_wave", {"width": 8, "context_dim": 8}, (3, 1, 1600)),
    ("logmel_cnn", {"n_mels": 16, "widths": (4, 8)}, (3, 1, 3200)),
    ("resnet18", {"width": 4, "patch_jitter": 0.0}, (3, 1, 32, 32)),  # no patch jitter: no other random draw
    ("resnet18", {"width": 2, "spatial_dims": 3, "patch_jitter": 0.0}, (2, 1, 16, 16, 16)),
    ("densenet121", {"init_features": 4, "growth_rate": 2, "patch_jitter": 0.0}, (3, 1, 32, 32)),
]
IDS = [f"{name}-{len(shape) - 2}d" for name, _, shape in NEW_DROPOUT]


def build(name, options, dropout):
    torch.manual_seed(0)
    return registry.build("encoder", name, dropout=dropout, **options)


@pytest.mark.parametrize("name, options, shape", NEW_DROPOUT, ids=IDS)
def test_dropout_option_changes_training_outputs_and_not_eval_outputs(name, options, shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    dropped, plain = build(name, options, 0.1), build(name, options, 0.0)
    assert applies_dropout(dropped) and not applies_dropout(plain)
    first, second = dropped(x)["embedding"], dropped(x)["embedding"]
    assert not torch.equal(first, second)
    plain.load_state_dict(dropped.state_dict())  # the same weights and BatchNorm running statistics
    dropped.eval(), plain.eval()
    assert torch.equal(dropped(x)["embedding"], plain(x)["embedding"])


@pytest.mark.parametrize("name, options, shape", NEW_DROPOUT, ids=IDS)
def test_dropout_zero_changes_no_number_and_draws_no_random_number(name, options, shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(2))
    encoder = build(name, options, 0.0)
    without = copy.deepcopy(encoder)
    without.dropout = nn.Identity()  # the encoder as it was before the option existed
    state = torch.get_rng_state()
    outputs = encoder(x)
    out = {key: outputs[key] for key in ("embedding", "sequence")}  # medical outputs are computed when read
    assert torch.equal(torch.get_rng_state(), state)
    reference = without(x)
    for key in out:
        assert torch.equal(out[key], reference[key]), key


def test_applies_dropout_finds_layers_rnns_and_declared_functional_dropout():
    class Functional(nn.Module):
        dropout = 0.2

    assert not applies_dropout(nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.0)))
    assert applies_dropout(nn.Sequential(nn.Linear(3, 3), nn.Dropout2d(0.1)))
    assert not applies_dropout(nn.GRU(3, 3, num_layers=1))
    assert applies_dropout(nn.GRU(3, 3, num_layers=2, dropout=0.1))
    assert applies_dropout(nn.Sequential(Functional()))
    assert applies_dropout(registry.build("encoder", "transformer", in_channels=2, dim=8, heads=2, dropout=0.1))


def tcn(dropout):
    torch.manual_seed(0)
    return registry.build("encoder", "tcn", in_channels=2, width=8, depth=2, dropout=dropout)


def test_two_passes_differ_in_training_and_are_equal_in_eval():
    encoders = {"x": tcn(0.1)}
    objective = SimCSE(encoders, encoder_name="tcn")
    batch = {"x": torch.randn(6, 2, 16, generator=torch.Generator().manual_seed(3))}
    z = objective.represent(encoders, batch)["z"]
    assert z.shape == (6, 2, 8) and not torch.equal(z[:, 0], z[:, 1])
    encoders["x"].eval()
    z = objective.represent(encoders, batch)["z"]
    assert torch.equal(z[:, 0], z[:, 1])


def test_loss_of_identical_passes_is_infonce_by_hand():
    encoders = {"x": tcn(0.1).eval()}
    objective = SimCSE(encoders, temperature=0.05, head=False, encoder_name="tcn")
    batch = {"x": torch.randn(5, 2, 16, generator=torch.Generator().manual_seed(4)),
             "mask": torch.arange(16)[None, :] < torch.tensor([16, 12, 9, 16, 14])[:, None]}
    out = objective(encoders, batch)
    e = encoders["x"](batch["x"], mask=batch["mask"])["embedding"].double()
    e = (e / e.norm(dim=1, keepdim=True)).tolist()
    cos = [[sum(a * b for a, b in zip(u, v)) for v in e] for u in e]
    expected = sum(-cos[i][i] / 0.05 + math.log(sum(math.exp(c / 0.05) for c in cos[i])) for i in range(5)) / 5
    assert out["loss"].item() == pytest.approx(expected, rel=1e-4)
    assert out["pos_sim"].item() == pytest.approx(1.0, abs=1e-6) and out["retrieval_acc"].item() == 1.0


MISSING = [  # (modality, encoder, overrides that turn its dropout off, input shape, the key the message names)
    ("sequence", "tcn", ["model.tcn.dropout=0.0"], (3, 32), "set model.tcn.dropout=0.1"),
    ("sequence", "gru", ["model.gru.dropout=0.0", "model.gru.layers=1"], (3, 32),
     "set model.gru.dropout=0.1 and model.gru.layers=2"),
    ("sequence", "gru", ["model.gru.layers=1"], (3, 32), "set model.gru.dropout=0.1 and model.gru.layers=2"),
    ("audio", "cpc_wave", ["model.cpc_wave.dropout=0.0"], (1, 3200), "set model.cpc_wave.dropout=0.1"),
    ("audio", "logmel_cnn", ["model.logmel_cnn.dropout=0.0"], (1, 3200), "set model.logmel_cnn.dropout=0.1"),
    ("medical", "resnet18", ["model.resnet18.dropout=0.0"], (1, 32, 32), "set model.resnet18.dropout=0.1"),
]


@pytest.mark.parametrize("modality, encoder, overrides, shape, expected", MISSING,
                         ids=[f"{m[1]}-{i}" for i, m in enumerate(MISSING)])
def test_missing_dropout_is_one_sentence_naming_the_key(modality, encoder, overrides, shape, expected):
    cfg = config_lib.load_config(modality, "simcse", overrides=[*TINY[modality], f"model.encoder={encoder}",
                                                                 *overrides])
    encoders = {"x": build_encoder(cfg, shape)}
    with pytest.raises(UserError) as err:
        build_objective(cfg, encoders, 8)
    message = str(err.value)
    assert message.endswith(expected) and f"encoder '{encoder}'" in message and "\n" not in message


@pytest.mark.parametrize("modality, encoder", [("sequence", "tcn"), ("sequence", "gru"), ("sequence", "transformer"),
                                               ("audio", "cpc_wave"), ("audio", "logmel_cnn"),
                                               ("medical", "resnet18"), ("medical", "densenet121")])
def test_each_modality_turns_dropout_on_for_simcse(modality, encoder):
    cfg = config_lib.load_config(modality, "simcse", overrides=[f"model.encoder={encoder}"])
    assert cfg["model"][encoder]["dropout"] == 0.1
    assert config_lib.load_config(modality, "supcon")["model"][encoder]["dropout"] == 0.0  # only for simcse
