"""The one exception type that reaches the user as a single line.

Library code raises `PlmlabError` (or a subclass) for anything the *user* can fix: a bad path,
an empty corpus, an invalid config, a corrupt checkpoint. The CLI prints `plmlab: error: MSG`
on stderr and exits with status 2; programming errors keep their tracebacks. What the user
should know but need not fix (a skipped file, a cache rebuilt) is one `warn` line on stderr.
"""

import sys


class PlmlabError(Exception):
    """A user-facing error: its message is one line that says what is wrong and how to fix it."""


def warn(message: str) -> None:
    """One line on stderr in the CLI's `plmlab: ...` form (flushed: it may precede a crash)."""
    print(f"plmlab: {message}", file=sys.stderr, flush=True)
