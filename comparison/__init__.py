"""The ``run.py compare`` subcommand: a modality x objective x seed grid of ordinary runs.

``command`` (plans the grid, runs each cell as a subprocess, resumes), ``budget`` (``--budget``:
equal steps, epochs or samples), ``report`` (comparison.md and comparison.csv), ``stats`` (mean,
std and 95% t interval over seeds), ``fractions`` (the label-fraction tables), ``figure``
(comparison.png) and ``fraction_figure`` (comparison_fractions.png).

May import ``training`` and everything below it; never ``evaluation``, ``experiment`` or
``run``: it reads the cells' results.json files (checked by import-linter, ``.importlinter``).
"""
