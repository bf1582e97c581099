"""The exceptions the CLI turns into one line and an exit status, without a traceback.

`UserError` (bad input) exits with status 2, `PartialFailure` (some of the work failed)
with 1; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input: names the file, line or field, what was expected and what was received."""


class PartialFailure(Exception):
    """Part of a command's work failed (a grid's cells): what finished was written, and the
    message names each failure. The command exits with status 1."""
