"""The ``run.py compare`` subcommand: a modality x objective x seed grid of ordinary runs.

``command`` (plans the grid, runs each cell as a subprocess, resumes), ``report``
(comparison.md and comparison.csv) and ``figure`` (comparison.png).

May import ``training`` and everything below it; never ``evaluation``, ``experiment`` or
``run``: it reads the cells' results.json files (checked by import-linter, ``.importlinter``).
"""
