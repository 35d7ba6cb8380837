"""The one exception type the library raises for problems a user can cause or fix."""


class ForgeryDetError(Exception):
    """A user-facing error: its message says what was wrong and what to do.

    The CLI prints it as one red line and exits with code 1; library code never prints.
    """
