"""``python run.py export RUN_DIR --out DIR``: a run's encoders as a self-contained folder.

DIR gets ``weights.safetensors`` (the encoders and, for paired objectives, the joint-space heads;
no optimizer state, no pickled code), ``config.yaml``, ``tokenizer.json`` (when the text encoder
has one), ``preprocess.json`` (what the loader did), ``model.json`` and, where ``torch.export``
handles the x encoder, ``x_encoder.pt2`` with a dynamic batch axis (else one line says why).
``load_run(DIR)`` reads the folder without the run's data or checkpoint.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from core.errors import UserError, report
from inference.export import export_run
from inference.load import load_run
from inference.source import PROGRAM


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="run.py export", description="Export a run's encoders: safetensors weights, config.yaml, "
                                           "tokenizer.json, preprocess.json, model.json and a torch.export "
                                           "program of the x encoder; load_run(DIR) reads the folder.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by run.py (config.yaml, "
                                                           "checkpoints/last.pt)")
    parser.add_argument("--out", metavar="DIR", required=True, help="the export folder (new, empty, or an "
                                                                    "earlier export)")
    parser.add_argument("--no-program", action="store_true", help=f"skip {PROGRAM} (torch.export takes seconds "
                                                                  "to a minute on a CPU)")
    return parser.parse_args(argv)


def main(argv) -> int:
    args = parse_args(argv)
    try:
        if Path(args.out).resolve() == Path(args.run_dir).resolve():
            raise UserError("--out must be another folder than RUN_DIR")
        run = load_run(args.run_dir, "cpu")
        model = export_run(run, Path(args.out), program=not args.no_program)
    except UserError as err:
        return report(err)
    program = PROGRAM if model["program"] else f"no {PROGRAM} ({model['program_note']})"
    print(f"{args.out}: step {model['step']} of {args.run_dir}, embedding {model['embedding_dim']}, {program}")
    return 0
