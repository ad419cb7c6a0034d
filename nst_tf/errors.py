"""The one exception type a user can cause."""


class NstError(Exception):
    """A problem with the user's input, files, weights or settings.

    The message says what is wrong and what to do; the command line prints it as one line and exits
    with status 2. Anything else that escapes the package is a bug.
    """


class Interrupted(Exception):
    """A run stopped after finishing its current step: by a signal (SIGINT, SIGTERM), or by its
    caller (`signum` 0: the web page's Stop).

    `run` is what was running: a `StyleTransfer` (its image is the last step's result), a network
    trainer, or a network's painting.
    """

    def __init__(self, signum: int, run):
        import signal

        super().__init__(f"stopped by {signal.Signals(signum).name}" if signum else "stopped on request")
        self.signum, self.run = signum, run


class TimeUp(Exception):
    """A run stopped because its time budget is spent (`nst_tf.budget.Deadline`): `run` holds the last
    step's picture, which is the result (not an error)."""

    def __init__(self, run):
        super().__init__("the time budget is spent")
        self.run = run
