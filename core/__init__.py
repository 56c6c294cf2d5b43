"""The bottom layer, imported by every other: configuration, the registry, errors, notes and
process-group facts.

``config`` (YAML layers merged and validated), ``registry`` (encoders, datasets, views and
objectives by name, with capabilities), ``errors`` (``UserError`` and how entry points report
it), ``notes`` (one-line ``note:`` messages) and ``process_group`` (rank and world size).

Imports nothing of the project outside ``core`` (checked by import-linter, ``.importlinter``).
"""
