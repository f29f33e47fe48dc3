"""One error type for bad input: its message is one line that names the file and the problem."""


class DataError(Exception):
    """Bad input data; the CLI prints the message alone and exits non-zero."""
