"""One exception family for everything a user can get wrong or a run can hit.

The CLI turns any `RatscoreError` into a single line on stderr and its `exit_code`;
`--debug` shows the traceback instead.
"""


class RatscoreError(Exception):
    """Base of all errors ratscore reports to a user."""

    exit_code = 1


class InputError(RatscoreError):
    """Bad usage or bad input: a file that does not parse, an unknown label, a bad option (exit 2)."""

    exit_code = 2


class RunError(RatscoreError):
    """A run failed for a reason other than its input: a full disk, a crashed stage (exit 1)."""

    exit_code = 1
