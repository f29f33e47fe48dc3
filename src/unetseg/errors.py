"""One error type for bad input: its message is one line that names the file and the problem."""


class Interrupted(Exception):
    """Work stopped on request (Ctrl-C, SIGTERM) after saving what is needed to go on; the message says how."""


class DataError(Exception):
    """Bad input data; the CLI prints the message alone and exits non-zero."""


class ReportedElsewhere(Exception):
    """Exit non-zero without a message: another process (rank 0 under torchrun) has said why."""

    def __init__(self, code: int = 2):
        super().__init__(code)
        self.code = code


def first_line(e: BaseException, limit: int = 120) -> str:
    """The first line of an exception's message, cut to `limit` characters (its type's name if it has none)."""
    return str(e).splitlines()[0][:limit] if str(e) else type(e).__name__
