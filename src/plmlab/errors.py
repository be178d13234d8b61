"""The one exception type that reaches the user as a single line.

Library code raises `PlmlabError` (or a subclass) for anything the *user* can fix: a bad path,
an empty corpus, an invalid config, a corrupt checkpoint. The CLI prints `plmlab: error: MSG`
on stderr and exits with status 2; programming errors keep their tracebacks. What the user
should know but need not fix (a skipped file, a cache rebuilt) is one `warn` line on stderr.
"""

import re
import sys

# `gpt2`, `org/name`: how a Hugging Face hub id reads (a local path the user meant would be there)
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


class PlmlabError(Exception):
    """A user-facing error: its message is one line that says what is wrong and how to fix it."""


def not_found(path, what: str) -> PlmlabError:
    """`PATH: no such WHAT`; where PATH reads as a hub id, how to get a local copy, since plmlab
    never downloads (a user who passes `gpt2` expects what transformers' from_pretrained does)."""
    message = f"{path}: no such {what}"
    if isinstance(path, str) and HUB_ID.fullmatch(path):
        local = path.split("/")[-1]
        message += (f" (if {path!r} is a Hugging Face hub id: plmlab never downloads, so fetch it on a machine with "
                    f"network, `huggingface-cli download {path} --local-dir {local}` or transformers' "
                    f"from_pretrained(...).save_pretrained('{local}'), then pass the directory, ./{local})")
    return PlmlabError(message)


def warn(message: str) -> None:
    """One line on stderr in the CLI's `plmlab: ...` form (flushed: it may precede a crash)."""
    print(f"plmlab: {message}", file=sys.stderr, flush=True)
