"""Errors whose message is meant for the user (shown as-is, never as a traceback)."""


class UserError(Exception):
    """Bad input from the user: the message names the file and the problem."""


class InputFileError(UserError, ValueError):
    """A file that cannot be read as what it claims to be."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def error_text(err: BaseException) -> str:
    """One line for the user: the message alone for the errors we raise on purpose
    (bad input, bad checkpoint, missing file), else prefixed with the exception type."""
    text = str(err).strip() or type(err).__name__
    # (a bad checkpoint, models.checkpoint.CheckpointError, is a ValueError)
    if isinstance(err, (UserError, FileNotFoundError, ValueError)):
        return text
    return f"{type(err).__name__}: {text}"
