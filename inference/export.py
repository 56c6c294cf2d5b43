"""An export folder of a loaded run: weights as safetensors, config, tokenizer, preprocessing and,
where the encoder exports, a ``torch.export`` program (the layout: ``inference/source.py``).

Nothing in it is pickled: safetensors holds tensors only, the rest is YAML and JSON, and the
program is torch.export's archive of a graph and its weights. No optimizer state is kept.
"""
from __future__ import annotations

import json
from pathlib import Path

from core import config as config_lib
from core.errors import UserError
from inference.load import LoadedRun
from inference.model import weights
from inference.program import export_program
from inference.source import MODEL, PROGRAM, SPEC, TOKENIZER, WEIGHTS
from inference.spec import write_spec
from modalities.text.tokenizer import Tokenizer
from training.run_dir import CONFIG

FILES = (WEIGHTS, CONFIG, SPEC, MODEL, TOKENIZER, PROGRAM)


def check_out(out: Path) -> None:
    """Raises UserError when ``out`` is a file or a folder holding anything but an export's files."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out '{out}' is a file; give a folder")
    other = sorted(p.name for p in out.iterdir() if p.name not in FILES) if out.is_dir() else []
    if other:
        raise UserError(f"--out '{out}' holds other files ({', '.join(other[:3])}); give a new or empty folder "
                        f"(or an earlier export, which is overwritten)")


def export_run(run: LoadedRun, out: Path, program: bool = True) -> dict:
    """Write the export folder ``out`` of ``run`` (loaded on the CPU); returns model.json's dict,
    whose ``program_note`` says why there is no x_encoder.pt2 (None when there is one).

    Raises:
        UserError: ``out`` holds other files (``check_out``).
    """
    out = Path(out)
    check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    save_file(weights(run.modules), str(out / WEIGHTS), metadata={"format": "pt", "step": str(run.step)})
    (out / CONFIG).write_text(config_lib.dump(run.config))
    write_spec(run.spec, out / SPEC)
    tokenizer = getattr(run.encoders["text"], "tokenizer", None) if "text" in run.encoders else None
    (out / TOKENIZER).unlink(missing_ok=True)
    if isinstance(tokenizer, Tokenizer):
        tokenizer.save(out / TOKENIZER)
    (out / PROGRAM).unlink(missing_ok=True)
    note = export_program(run.encoders["x"], run.spec["input_shape"], out / PROGRAM) if program else "not asked for"
    cfg = run.config
    model = {"step": run.step, "modality": cfg["modality"], "objective": cfg["objective"]["name"],
             "encoder": cfg["model"]["encoder"], "dataset": cfg["data"]["name"], "classes": list(run.classes),
             "embedding_dim": int(run.encoders["x"].dims["embedding"]), "paired": run.paired,
             "input_shape": list(run.spec["input_shape"]), "program": PROGRAM if note is None else None,
             "program_note": note, "exported_from": str(run.source)}
    (out / MODEL).write_text(json.dumps(model, indent=2) + "\n")
    return model
