"""Named presets as plain data: paper sizes plus `<family>-tiny` / `<family>-mini` CPU sizes.

Each family module defines `PRESETS: dict[str, dict]` (Config fields); the registry merges
them. `tiny` is well under 1 M parameters (tests, smoke runs); `mini` is a few M parameters
(learns something real on a laptop CPU in minutes).
"""

from __future__ import annotations

import difflib

from ..config import Config
from ..errors import PlmlabError
from ..registry import import_present

FAMILY_MODULES = ("gpt", "llama", "bert", "t5", "glm", "mistral", "distilbert", "xlm", "bart", "ernie")


PRESETS: dict[str, dict] = {
    name: fields for module in import_present(__name__, FAMILY_MODULES) for name, fields in module.PRESETS.items()
}


def preset_names() -> list[str]:
    return list(PRESETS)


def get_preset(name: str) -> Config:
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise PlmlabError(f"unknown preset {name!r}{hint}; `plmlab info --list` shows them all")
    return Config.from_dict(dict(PRESETS[name]))
