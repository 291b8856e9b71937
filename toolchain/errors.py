"""The one exception type a user ever sees: the CLI prints it on one line and exits 2."""


class CompressError(Exception):
    """A user-facing problem: bad input, missing data, impossible option. Never a bug."""
