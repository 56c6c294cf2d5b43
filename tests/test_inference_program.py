"""inference.program: the x encoder's torch.export program, or one line saying why there is none."""
import torch
from torch import nn

import modalities  # noqa: F401  (registers encoders)
from core import registry
from inference.program import export_program


def test_a_tcn_exports_with_a_dynamic_batch(tmp_path):
    torch.manual_seed(0)
    encoder = registry.build("encoder", "tcn", in_channels=2, width=8, depth=2).eval()
    assert export_program(encoder, (2, 20), tmp_path / "x.pt2") is None
    program = torch.export.load(str(tmp_path / "x.pt2")).module()
    for batch in (1, 7):
        x = torch.randn(batch, 2, 20)
        with torch.no_grad():
            torch.testing.assert_close(program(x), encoder(x)["embedding"], atol=1e-5, rtol=0)


class DataDependent(nn.Module):
    """An encoder torch.export cannot trace: its branch depends on the values of x."""

    def forward(self, x):
        return {"embedding": x.flatten(1) if x.sum() > 0 else -x.flatten(1)}


def test_an_encoder_that_does_not_export_gives_a_reason_and_no_file(tmp_path):
    reason = export_program(DataDependent(), (1, 4), tmp_path / "x.pt2")
    assert isinstance(reason, str) and reason and "\n" not in reason
    assert not (tmp_path / "x.pt2").exists()
