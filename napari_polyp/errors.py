"""Errors whose message is meant for the user (shown as-is, never as a traceback)."""


class UserError(Exception):
    """Bad input from the user: the message names the file and the problem."""


class InputFileError(UserError, ValueError):
    """A file that cannot be read as what it claims to be."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")
