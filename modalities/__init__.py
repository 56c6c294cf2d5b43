"""Every modality package; importing this registers their encoders, datasets and views.

Each of ``audio``, ``medical``, ``sequence`` holds its encoders, its built-in synthetic data,
its loaders of user data and its views; ``text`` the text encoders and tokenizer of the paired
objectives; ``user_data`` the one split and label policy every loader calls; ``layers`` the
layers encoders share.

May import only the bottom layer (``config``, ``registry``, ``errors``, ``notes``,
``process_group``); never ``objectives`` or anything above (checked by import-linter).
"""
from modalities import audio  # noqa: F401
from modalities import sequence  # noqa: F401
from modalities import text  # noqa: F401
from modalities import medical  # noqa: F401
