"""The one exception type that the CLI turns into a one-line message and an exit status."""


class MnistlabError(Exception):
    """A problem with the user's input or environment, not a bug.

    The CLI prints `mnistlab: error: <message>` with no traceback and exits with `exit_code`.
    Messages name the file or field and say what is wrong.
    """

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
