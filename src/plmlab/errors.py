"""The one exception type that reaches the user as a single line.

Library code raises `PlmlabError` (or a subclass) for anything the *user* can fix: a bad path,
an empty corpus, an invalid config, a corrupt checkpoint. The CLI prints `plmlab: error: MSG`
on stderr and exits with status 2; programming errors keep their tracebacks.
"""


class PlmlabError(Exception):
    """A user-facing error: its message is one line that says what is wrong and how to fix it."""
