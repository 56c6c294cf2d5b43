"""The training loop and what a step needs.

``build`` (config -> datasets, model, views, optimizer; ``pick_device``, ``build_training``),
``compatibility`` (which objective can train on which modality), ``loop`` (the loop),
``data`` (loaders), ``budget`` (steps and batch fitted to the data), ``checkpoint``,
``run_dir`` (what a run directory holds), ``grad_cache``, ``precision`` (mixed precision
and speed switches), ``schedule``, ``nonfinite``, ``signals``, ``progress``,
``distributed`` (torchrun), ``host_memory``, ``online_eval`` (the online linear classifier).

May import ``objectives``, ``modalities`` and the bottom layer (``config``, ``registry``,
``errors``, ``notes``, ``process_group``); never ``evaluation``, ``comparison``,
``experiment`` or ``run`` (checked by import-linter, ``.importlinter``).
"""
