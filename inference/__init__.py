"""Using what was trained: ``load_run`` (encoders + preprocessing, from Python), ``run.py embed``,
``run.py export`` and ``run.py query``.

``load`` (``load_run``, ``LoadedRun``), ``source`` (reading a run or an export folder), ``model``
(the encoders and joint-space heads without the data, their tensors), ``spec`` (what the loader
did, ``preprocess.json``), ``preprocess`` (raw input -> model input), ``datasets`` (the splits to
embed: built-in or ``--data``), ``embed`` (a split's embeddings and item ids), ``progress``,
``program`` (the ``torch.export`` program), ``export`` (an export folder), ``query`` (the items
nearest a sentence in a paired run's joint space), ``embed_command`` (``run.py embed``),
``export_command`` (``run.py export``) and ``query_command`` (``run.py query``).

May import ``training`` and everything below it; never ``evaluation``, ``comparison``,
``experiment`` or ``run`` (checked by import-linter, ``.importlinter``).
"""
import modalities  # noqa: F401  (registers encoders, datasets, views)
import objectives  # noqa: F401  (registers objectives)
from inference.load import LoadedRun, load_run  # noqa: F401

__all__ = ["LoadedRun", "load_run"]
