"""The one exception type a user can cause."""


class NstError(Exception):
    """A problem with the user's input, files, weights or settings.

    The message says what is wrong and what to do; the command line prints it as one line and exits
    with status 2. Anything else that escapes the package is a bug.
    """
