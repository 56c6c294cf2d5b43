"""Frozen-encoder evaluation, fine-tuning and the ``run.py eval`` subcommand.

``protocols`` (every protocol on the trained model and its random-init floor),
``linear_probe``, ``svm`` (the RBF-SVM protocol), ``metrics`` (kNN, retrieval, zero-shot,
alignment, uniformity, effective rank), ``tensorboard_extras`` (projector, similarity
matrix, thumbnails, hparams), ``online`` (what each validation logs with ``train.online_eval``: the
online classifier, kNN, collapse monitors), ``label_subsets`` (stratified, seeded label fractions),
``finetune`` (encoder and linear head trained end to end on a copy) and ``command``
(``python run.py eval RUN_DIR``).

May import ``training`` and everything below it; never ``comparison``, ``experiment`` or
``run`` (checked by import-linter, ``.importlinter``).
"""
