"""The project's error for bad input, shared by every stage and adapter.

A :class:`DataError` is a problem with what the user gave (a file, a column, a config
value), not a bug: its message names the file, column, key or value and what was
expected, and the workflow's scripts report it as one line without a traceback
(:func:`mia_audit.pipeline.runtime.run_script`).
"""


class DataError(ValueError):
    """Bad input data or configuration: the message names the file, column, key or value and what was expected."""


class ConfigError(DataError):
    """A configuration that passes the schema but cannot run: names the key and what was expected."""
