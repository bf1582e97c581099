"""The one exception type for bad user input.

The CLI prints a `UserError` as a single line and exits with status 2, without a
traceback; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input: names the file, line or field, what was expected and what was received."""
