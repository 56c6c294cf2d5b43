"""The ts2vec objective and encoder: the crops pair the same input timestamps, stay inside each
series' real steps and map onto downsampling encoders; timestamp masking only in training, at its
rate; max-pooled embeddings that ignore padding; the configs and the capability matrix."""
import pytest
import torch
from torch import nn

import modalities  # noqa: F401  (registers)
import objectives  # noqa: F401
from core import config as config_lib
from core import registry
from core.errors import UserError
from objectives import ts2vec as T2V
from training.compatibility import capability_matrix


# ---- crops


class TimeIndex(nn.Module):
    """An encoder whose sequence is its input (B, C, T) -> (B, T, C), optionally average-pooled by ``factor``."""

    def __init__(self, channels=2, factor=1):
        super().__init__()
        self.factor, self.dims = factor, {"embedding": channels, "sequence": channels}

    def forward(self, x, mask=None):
        self.seen_mask = mask
        seq = nn.functional.avg_pool1d(x, self.factor) if self.factor > 1 else x
        return {"sequence": seq.transpose(1, 2), "embedding": seq.mean(-1)}


def stamped(B, T):
    """x[b, 0, t] = t, x[b, 1, t] = 1000 b: each value names its series and input timestamp."""
    t = torch.arange(T, dtype=torch.float64)
    return torch.stack([t.expand(B, T), 1000.0 * torch.arange(B, dtype=torch.float64)[:, None].expand(B, T)], dim=1)


def captured_overlaps(monkeypatch, encoder, batch, draws, **options):
    seen = []
    monkeypatch.setattr(T2V, "hierarchical_contrastive_loss", lambda z1, z2, *a: seen.append((z1, z2)) or z1.sum())
    objective = registry.build("objective", "ts2vec", encoders={"x": encoder}, **options)
    for _ in range(draws):
        objective({"x": encoder}, batch)
    return seen


def test_the_overlap_pairs_the_same_input_timestamps(monkeypatch):
    torch.manual_seed(0)
    B, T = 5, 40
    seen = captured_overlaps(monkeypatch, TimeIndex(), {"x": stamped(B, T)}, draws=60)
    lengths = set()
    for z1, z2 in seen:
        assert torch.equal(z1, z2)
        assert torch.equal(z1[..., 1], 1000.0 * torch.arange(B, dtype=torch.float64)[:, None].expand_as(z1[..., 1]))
        steps = z1[..., 0]
        assert torch.equal(steps - steps[:, :1], torch.arange(steps.shape[1], dtype=torch.float64).expand_as(steps))
        assert steps.min() >= 0 and steps.max() <= T - 1
        lengths.add(steps.shape[1])
    assert min(lengths) >= 2 and len(lengths) > 10  # crop_l ~ U{2, T}: many lengths
    offsets = {tuple(z1[:, 0, 0].tolist()) for z1, _ in seen}
    assert len(offsets) > 40  # per-series offsets vary


def test_crops_stay_within_each_series_real_span_and_carry_the_mask(monkeypatch):
    torch.manual_seed(1)
    T = 30
    mask = torch.zeros(3, T, dtype=torch.bool)
    mask[0, :] = True
    mask[1, 4:20] = True
    mask[1, 10] = False  # a missing step inside: kept, masked
    mask[2, :12] = True
    encoder = TimeIndex()
    seen = captured_overlaps(monkeypatch, encoder, {"x": stamped(3, T), "mask": mask}, draws=40)
    for z1, z2 in seen:
        assert torch.equal(z1, z2) and z1.shape[1] <= 12  # the shortest span (series 2: 12 steps)
        steps = z1[..., 0]
        assert steps[1].min() >= 4 and steps[1].max() <= 19 and steps[2].max() <= 11
    assert encoder.seen_mask is not None and encoder.seen_mask.dtype == torch.bool


def test_window_crops_range_over_the_padded_window_and_carry_the_views_mask(monkeypatch):
    torch.manual_seed(1)
    T = 30
    mask = torch.zeros(3, T, dtype=torch.bool)
    mask[0, :] = True
    mask[1, 4:20] = True
    mask[2, :12] = True
    masks_seen = []

    class Recording(TimeIndex):
        def forward(self, x, mask=None):
            masks_seen.append((x[:, 0].clone(), mask.clone()))
            return super().forward(x, mask)

    seen = captured_overlaps(monkeypatch, Recording(), {"x": stamped(3, T), "mask": mask}, draws=60,
                             crop_span="window")
    lengths = {z1.shape[1] for z1, _ in seen}
    assert max(lengths) > 12  # longer than the shortest real span, which bounds "real" crops
    assert any(z1[2, :, 0].max() > 11 for z1, _ in seen)  # series 2's crops reach its padding
    for z1, z2 in seen:
        assert torch.equal(z1, z2) and z1[..., 0].min() >= 0 and z1[..., 0].max() <= T - 1
    for steps, view_mask in masks_seen:  # each view's mask is the mask at the view's own input steps
        assert torch.equal(view_mask, mask.gather(1, steps.long()))
    with pytest.raises(ValueError, match="crop_span must be one of real, window"):
        registry.build("objective", "ts2vec", encoders={"x": TimeIndex()}, crop_span="padded")


def test_downsampling_encoder_overlap_is_proportional_and_nearly_aligned(monkeypatch):
    torch.manual_seed(2)
    seen = captured_overlaps(monkeypatch, TimeIndex(factor=4), {"x": stamped(4, 64)}, draws=60, min_crop=8)
    for z1, z2 in seen:
        assert z1.shape == z2.shape and z1.shape[1] >= 1
        assert (z1[..., 0] - z2[..., 0]).abs().max() <= 5  # within about one encoder step (4 inputs)


def test_max_train_length_cuts_spans_to_random_windows():
    torch.manual_seed(3)
    mask = torch.ones(4, 50, dtype=torch.bool)
    mask[1, 30:] = False
    start, end = T2V.real_spans(torch.zeros(4, 1, 50), mask, max_train_length=20)
    assert ((end - start) == 20).all() and (start >= 0).all() and end[1] <= 30 and (end <= 50).all()
    starts = {tuple(T2V.real_spans(torch.zeros(4, 1, 50), None, 20)[0].tolist()) for _ in range(10)}
    assert len(starts) > 1


def test_objective_refuses_images_and_series_without_a_real_step():
    objective = registry.build("objective", "ts2vec", encoders={"x": TimeIndex()})
    with pytest.raises(UserError, match=r"\(B, C, T\)"):
        objective({"x": TimeIndex()}, {"x": torch.randn(2, 1, 8, 8)})
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1] = False
    with pytest.raises(UserError, match="no real step"):
        objective({"x": TimeIndex()}, {"x": torch.randn(2, 2, 8), "mask": mask})


def test_objective_uses_the_encoder_context_when_it_has_one():
    tcn = registry.build("encoder", "tcn", in_channels=1, width=8, depth=2)
    assert registry.build("objective", "ts2vec", encoders={"x": tcn}).output == "context"
    gru = registry.build("encoder", "gru", in_channels=1, hidden=8)
    assert registry.build("objective", "ts2vec", encoders={"x": gru}).output == "sequence"


def test_same_seed_same_loss_and_every_parameter_learns():
    encoder = registry.build("encoder", "ts2vec", in_channels=2, hidden=8, out_dim=8, depth=2)
    objective = registry.build("objective", "ts2vec", encoders={"x": encoder})
    x = torch.randn(6, 2, 32)
    losses = []
    for _ in range(2):
        torch.manual_seed(4)
        out = objective({"x": encoder}, {"x": x})
        losses.append(out["loss"])
    assert torch.equal(losses[0], losses[1]) and torch.isfinite(losses[0])
    assert 2 <= out["crop_len"] <= 32 and out["overlap_steps"] == out["crop_len"] and 0 <= out["instance_acc"] <= 1
    losses[0].backward()
    for name, p in encoder.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# ---- the encoder


def first_block_input(encoder, x, mask=None):
    seen = []
    handle = encoder.blocks[0].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    encoder(x, mask)
    handle.remove()
    return seen[0]  # (B, hidden, T)


@pytest.mark.parametrize("mask_p", [0.5, 0.2])
def test_timestamp_masking_rate_in_training_and_none_in_eval(mask_p):
    torch.manual_seed(5)
    encoder = registry.build("encoder", "ts2vec", in_channels=2, hidden=8, out_dim=8, depth=1, mask_p=mask_p)
    x = torch.randn(64, 2, 200)
    zeroed = (first_block_input(encoder, x) == 0).all(dim=1)  # (B, T): whole latent vector zero
    assert abs(zeroed.float().mean().item() - mask_p) < 0.02  # 12800 draws: 3 sigma < 0.013
    encoder.eval()
    assert not (first_block_input(encoder, x) == 0).all(dim=1).any()


def test_padding_is_zeroed_also_in_eval():
    encoder = registry.build("encoder", "ts2vec", in_channels=2, hidden=8, out_dim=8, depth=1).eval()
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[0, 6:] = False
    h = first_block_input(encoder, torch.randn(2, 2, 10), mask)
    assert (h[0, :, 6:] == 0).all() and not (h[0, :, :6] == 0).all(dim=0).any()


def test_encoder_shapes_and_embedding_is_the_max_over_real_steps():
    torch.manual_seed(6)
    encoder = registry.build("encoder", "ts2vec", in_channels=3).eval()
    assert encoder.dims == {"embedding": 128, "sequence": 128}
    x = torch.randn(3, 3, 50)
    x[0, :, 30:] = 1e3  # garbage in the padding
    mask = torch.ones(3, 50, dtype=torch.bool)
    mask[0, 30:] = False
    mask[2] = False
    with torch.no_grad():
        out = encoder(x, mask)
        alone = encoder(x[:1, :, :30])
    assert out["sequence"].shape == (3, 50, 128) and out["embedding"].shape == (3, 128)
    torch.testing.assert_close(out["embedding"][0], out["sequence"][0, :30].amax(dim=0))
    torch.testing.assert_close(out["embedding"][1], out["sequence"][1].amax(dim=0))
    torch.testing.assert_close(out["embedding"][0], alone["embedding"][0], atol=1e-5, rtol=1e-5)
    assert (out["embedding"][2] == 0).all() and (out["sequence"][0, 30:] == 0).all()


def test_encoder_is_not_causal_and_keeps_the_time_resolution():
    torch.manual_seed(7)
    encoder = registry.build("encoder", "ts2vec", in_channels=1, depth=2).eval()
    x = torch.randn(1, 1, 33)
    later = x.clone()
    later[..., 20:] += 1.0
    with torch.no_grad():
        a, b = encoder(x)["sequence"], encoder(later)["sequence"]
    assert a.shape[1] == 33 and not torch.allclose(a[:, 19], b[:, 19])  # step 19 sees step 20


# ---- registry, configs, matrix


def test_capability_matrix_says_why_ts2vec_cannot_crop_images():
    cells = capability_matrix()
    assert cells["audio", "ts2vec"] == [] and cells["sequence", "ts2vec"] == []
    assert cells["medical", "ts2vec"] == ["series"]
    assert registry.get("objective", "ts2vec").capabilities == {"series", "sequence"}


def test_sequence_ts2vec_takes_its_encoder_and_the_reference_recipe_and_audio_raises_the_shortest_crop():
    default = config_lib.load_config("sequence", "ts2vec")
    assert default["model"]["encoder"] == "ts2vec" and default["model"]["ts2vec"]["mask_p"] == 0.5
    assert (default["train"]["batch_size"], default["optim"]["lr"]) == (8, 1e-3)
    assert default["train"]["steps_by_size"] == [100000, 200, 600] and default["train"]["steps"] is None
    assert default["objective"]["max_train_length"] == 512
    assert config_lib.load_config("sequence", "simclr")["model"]["encoder"] == "tcn"  # the others keep tcn
    assert config_lib.load_config("sequence", "ts2vec", overrides=["model.encoder=tcn"])["model"]["encoder"] == "tcn"
    audio = config_lib.load_config("audio", "ts2vec")
    assert audio["model"]["encoder"] == "cpc_wave" and audio["objective"]["min_crop"] == 1600
    assert config_lib.load_config("sequence", "ts2vec", overrides=["model.encoder=gru"])["model"]["encoder"] == "gru"
