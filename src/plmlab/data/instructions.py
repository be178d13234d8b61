"""Built-in instruction and preference data, written deterministically from the standard library
the built-in corpus reads (data/builtin.py), no download.

The built-in corpus keeps docstrings but not the names they document, so the facts are read
here from the same files (``stdlib_files``, parsed with ``ast``, never imported): every public
top-level function or class with a docstring gives

    "What does json.dumps do?"            -> its docstring's summary line
    "Which module provides dumps?"        -> "json"        (names defined in one module only)
    "Give the signature of json.dumps."   -> "dumps(obj, *, skipkeys=False, ...)"   (functions)

A module is a *document*: each module's items are all in the train split or all in the eval
split (about 1 in 10 modules, by a hash of the module's name, so adding a module moves no other).
The preference set pairs each question with its right answer (chosen) and the answer of another
item of the same kind (rejected). Parsing takes seconds, so the facts are cached on disk (one
JSON file per Python build, as the corpus is) and memoised per process.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import sys
import sysconfig
from pathlib import Path

from plmlab.data.builtin import stdlib_files
from plmlab.data.files import cache_dir, open_regular, remove_entry, write_text_atomic
from plmlab.errors import PlmlabError, warn

SPLITS = ("train", "eval")
EVAL_BUCKETS = 10  # one module in ten is held out
MIN_SUMMARY, MAX_SUMMARY = 12, 100  # characters of a usable summary line
MAX_SIGNATURE = 80
CACHE_VERSION = 2  # bump when the extraction changes


def builtin_instructions(split: str = "train") -> list[dict]:
    """[{"prompt", "response", "kind", "module"}] of one split, in a fixed order."""
    _check_split(split)
    facts = _facts()
    unique = _defined_once(facts)
    items = []
    for module, name, kind, summary, signature in facts:
        if _split_of(module) != split:
            continue
        items.append(_item(f"What does {module}.{name} do?", summary, "summary", module))
        if name in unique:
            items.append(_item(f"Which module provides {name}?", module, "module", module))
        if signature:
            items.append(_item(f"Give the signature of {module}.{name}.", signature, "signature", module))
    return items


def builtin_conversations(split: str = "train") -> list[dict]:
    """The split as SFT conversations: [{"messages": [user, assistant], "_where"}]."""
    return [{"messages": [{"role": "user", "content": it["prompt"]}, {"role": "assistant", "content": it["response"]}],
             "_where": f"built-in instructions ({split}) #{i}"} for i, it in enumerate(builtin_instructions(split))]


def builtin_preferences(split: str = "train") -> list[dict]:
    """[{"prompt", "chosen", "rejected"}]: the right answer against the answer of the next item of
    the same kind (in the split's order) whose answer differs: a plausible, wrong answer."""
    items = builtin_instructions(split)
    by_kind: dict[str, list[dict]] = {}
    for it in items:
        by_kind.setdefault(it["kind"], []).append(it)
    out = []
    for it in items:
        pool = by_kind[it["kind"]]
        at = pool.index(it)
        wrong = next((o["response"] for o in pool[at + 1:] + pool[:at] if o["response"] != it["response"]), None)
        if wrong is not None:
            out.append({"prompt": it["prompt"], "chosen": it["response"], "rejected": wrong})
    return out


def _item(prompt: str, response: str, kind: str, module: str) -> dict:
    return {"prompt": prompt, "response": response, "kind": kind, "module": module}


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise PlmlabError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")


def _split_of(module: str) -> str:
    bucket = int(hashlib.sha256(module.encode()).hexdigest(), 16) % EVAL_BUCKETS
    return "eval" if bucket == 0 else "train"


def _defined_once(facts) -> set[str]:
    seen: dict[str, set[str]] = {}
    for module, name, *_ in facts:
        seen.setdefault(name, set()).add(module)
    return {name for name, modules in seen.items() if len(modules) == 1}


@functools.lru_cache(maxsize=1)
def _facts() -> tuple[tuple[str, str, str, str, str], ...]:
    """(module, name, "function" | "class", summary, signature or "") of the whole stdlib."""
    path = _cache_path()
    if os.path.lexists(path):
        try:
            with open_regular(path, follow_symlinks=False) as f:
                data = json.loads(f.read().decode("utf-8"))
            if isinstance(data, list) and all(isinstance(r, list) and len(r) == 5 for r in data):
                return tuple(tuple(r) for r in data)
            raise ValueError("not a list of facts")
        except (OSError, ValueError) as e:
            warn(f"cached built-in instructions {path} are damaged ({e}); rebuilding them")
            remove_entry(path)
    facts = tuple(fact for file in stdlib_files() for fact in _module_facts(file))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(facts))
    except OSError:  # an unwritable cache only costs the parse next time
        pass
    return facts


def _cache_path() -> Path:
    key = f"{CACHE_VERSION} {sys.version} {sysconfig.get_paths()['stdlib']}"
    return cache_dir() / f"builtin-instructions-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def _module_facts(path: str) -> list[tuple[str, str, str, str, str]]:
    module = _module_name(path)
    if module is None or any(part.startswith("_") for part in module.split(".")):
        return []
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read())
    except (SyntaxError, ValueError, UnicodeDecodeError, OSError):
        return []
    facts = []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) or node.name.startswith("_"):
            continue
        summary = _summary(ast.get_docstring(node) or "")
        if summary is None:
            continue
        kind = "class" if isinstance(node, ast.ClassDef) else "function"
        signature = f"{node.name}({ast.unparse(node.args)})" if kind == "function" else ""
        facts.append((module, node.name, kind, summary, signature if len(signature) <= MAX_SIGNATURE else ""))
    return facts


def _module_name(path: str) -> str | None:
    root = sysconfig.get_paths()["stdlib"]
    rel = os.path.relpath(path, root)
    if rel.startswith(".."):
        return None
    parts = rel[:-3].split(os.sep)  # drop ".py"
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) if parts and all(p.isidentifier() for p in parts) else None


def _summary(doc: str) -> str | None:
    """The docstring's first line, if it is a whole sentence of prose (not a signature, not a
    sentence that goes on in the next line)."""
    line = " ".join(doc.strip().split("\n", 1)[0].split())
    if not (MIN_SUMMARY <= len(line) <= MAX_SUMMARY) or not line[0].isupper() or "(" in line[:20] \
            or not line.endswith("."):
        return None
    return line
