"""The base of every error that is the user's to fix (a bad name, key, file or pair).

``run.py`` prints these as one sentence and exits with status 2; anything
else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """An error in the user's input, reported without a traceback."""
