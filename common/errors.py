"""The one error type for failures a user can fix; the command layer turns it into exit code 2.

Each package raises `UserError` (or a subclass naming its domain, such as the zoo's
`ZooError`) with a message that says what went wrong and where. `cellzoo.cli` prints
the message without a traceback and exits with code 2; any other exception is an
internal error (exit code 1).
"""

from __future__ import annotations


class UserError(Exception):
    """A failure the user can fix: a bad option, a missing file, a locked or unwritable zoo."""

    exit_code = 2


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be read, or that belongs to a different run or search."""
