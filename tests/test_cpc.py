"""CPC InfoNCE against a float64 loop formulation, analytic values, and the objective module."""
import math

import numpy as np
import pytest
import torch

from modalities.audio.encoders import CPCWaveEncoder
from core.errors import UserError
from objectives.cpc import CPC
from objectives.functional import cpc_infonce


def reference_cpc(context, latents, weights, negative_index, valid=None):
    """Loop over every (k, b, t): -log softmax of the positive among [positive, negatives];
    with ``valid``, only positions whose t and t + k are both valid."""
    c, z, w, neg = (np.asarray(a, dtype=np.float64) for a in (context, latents, weights, negative_index))
    valid = np.ones(z.shape[:2], bool) if valid is None else np.asarray(valid)
    B, T, D = z.shape
    flat = z.reshape(B * T, D)
    loss, acc = 0.0, []
    for k in range(1, w.shape[0] + 1):
        terms, hits = [], []
        for b in range(B):
            for t in range(T - k):
                if not (valid[b, t] and valid[b, t + k]):
                    continue
                pred = w[k - 1] @ c[b, t]
                scores = [pred @ z[b, t + k]] + [pred @ flat[int(j)] for j in neg[b]]
                m = max(scores)
                terms.append(m + math.log(sum(math.exp(s - m) for s in scores)) - scores[0])
                hits.append(float(np.argmax(scores) == 0))
        loss += np.mean(terms)
        acc.append(np.mean(hits))
    return loss, np.array(acc)


@pytest.mark.parametrize("B, T, Dz, Dc, K, N", [(3, 9, 5, 4, 3, 6), (1, 4, 2, 3, 3, 1), (4, 6, 3, 3, 1, 10)])
def test_matches_float64_loop_reference(B, T, Dz, Dc, K, N):
    g = torch.Generator().manual_seed(B * 100 + T)
    context, latents = torch.randn(B, T, Dc, generator=g), torch.randn(B, T, Dz, generator=g)
    weights = torch.randn(K, Dz, Dc, generator=g)
    negative_index = torch.randint(0, B * T, (B, N), generator=g)
    loss, acc = cpc_infonce(context, latents, weights, negative_index)
    ref_loss, ref_acc = reference_cpc(context, latents, weights, negative_index)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-5)
    np.testing.assert_allclose(acc.numpy(), ref_acc, atol=1e-6)


def test_padding_mask_leaves_padded_positions_out():
    B, T, D, K, N = 3, 8, 4, 3, 5
    g = torch.Generator().manual_seed(5)
    context, latents = torch.randn(B, T, D, generator=g), torch.randn(B, T, D, generator=g)
    weights = torch.randn(K, D, D, generator=g)
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[0, 5:], valid[2, 6:] = False, False  # two series shorter than the batch
    negative_index = valid.flatten().nonzero().squeeze(1)[torch.randint(0, int(valid.sum()), (B, N), generator=g)]
    loss, acc = cpc_infonce(context, latents, weights, negative_index, valid)
    ref_loss, ref_acc = reference_cpc(context, latents, weights, negative_index, valid)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-5)
    np.testing.assert_allclose(acc.numpy(), ref_acc, atol=1e-6)
    # Garbage in the padding changes nothing.
    latents2, context2 = latents.clone(), context.clone()
    latents2[~valid], context2[~valid] = 1e3, -1e3
    assert cpc_infonce(context2, latents2, weights, negative_index, valid)[0].item() == pytest.approx(loss.item(), rel=1e-5)


def test_uninformative_scores_give_k_log_n_plus_one():
    # Zero predictors score every candidate 0: each step's loss is log(1 + N).
    B, T, K, N = 2, 10, 4, 7
    loss, _ = cpc_infonce(torch.randn(B, T, 3), torch.randn(B, T, 5), torch.zeros(K, 5, 3),
                          torch.randint(0, B * T, (B, N)))
    assert loss.item() == pytest.approx(K * math.log(N + 1), rel=1e-6)


def test_perfect_predictor_reaches_zero_loss_and_full_accuracy():
    # Orthogonal one-hot latents and a predictor that maps c_t to a large multiple of z_{t+1}.
    B, T = 2, 5
    latents = torch.eye(B * T).reshape(B, T, B * T)
    context = torch.zeros(B, T, B * T)
    context[:, :-1] = latents[:, 1:] * 50.0
    weights = torch.eye(B * T).unsqueeze(0)
    # Each sequence's negatives contain its own positive once (index 3 at t=2; index 8 at t=2):
    # those two positions tie at log 2, the other six are ~0, so the mean is log(2) / 4.
    negatives = torch.tensor([[0, 3, 6, 9], [1, 2, 4, 8]])
    loss, acc = cpc_infonce(context, latents, weights, negatives)
    assert loss.item() == pytest.approx(math.log(2) / 4, rel=1e-5)
    assert acc.item() == 1.0  # a tie goes to the positive (argmax takes the first)


def test_too_many_prediction_steps_is_a_clear_error():
    with pytest.raises(ValueError, match="predicts 5 steps ahead but sequences have only 5"):
        cpc_infonce(torch.randn(1, 5, 2), torch.randn(1, 5, 2), torch.randn(5, 2, 2), torch.zeros(1, 1, dtype=torch.long))


def test_objective_trains_every_parameter_and_logs_step_accuracy():
    encoder = CPCWaveEncoder(width=8, context_dim=6)
    objective = CPC({"x": encoder}, prediction_steps=3, n_negatives=4)
    out = objective({"x": encoder}, {"x": torch.randn(2, 1, 1600)})
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    assert sorted(k for k in out if k.startswith("cpc/acc_step")) == ["cpc/acc_step1", "cpc/acc_step2", "cpc/acc_step3"]
    for name, p in [*encoder.named_parameters(), *objective.named_parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_objective_owns_a_context_network_when_the_encoder_has_none():
    class Patches(torch.nn.Module):  # an encoder with only a sequence, like rows of image patches
        dims = {"embedding": 4, "sequence": 4}

        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(3, 4)

        def forward(self, x):
            seq = self.proj(x)
            return {"sequence": seq, "embedding": seq.mean(1)}

    encoder = Patches()
    objective = CPC({"x": encoder}, prediction_steps=2, n_negatives=3)
    assert objective.own_context is not None
    out = objective({"x": encoder}, {"x": torch.randn(2, 6, 3)})
    out["loss"].backward()
    assert all(p.grad is not None for p in objective.own_context.parameters())


def test_objective_names_the_fix_when_sequences_are_too_short():
    encoder = CPCWaveEncoder(width=4, context_dim=4)
    objective = CPC({"x": encoder}, prediction_steps=12)
    with pytest.raises(UserError, match="lower objective.prediction_steps or use longer inputs"):
        objective({"x": encoder}, {"x": torch.randn(2, 1, 160 * 12)})  # 12 latents, 12 steps ahead
