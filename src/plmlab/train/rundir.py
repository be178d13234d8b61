"""The run directory's guarantees, for every kind of training (pretrain, finetune, ...):

* one process at a time (`RunLock` on DIR/.lock, dropped by the OS when the process dies);
* an earlier run in DIR is refused unless the user says `--resume` or `--overwrite`, and
  its files are removed only once the new run is set up and about to write;
* `--resume` continues from the newest checkpoint that verifies, and refuses a directory
  whose run finished or was cut short without one (it never deletes a final/ to "resume").

Commands that write one folder rather than a run (`merge-lora`, `tokenizer train`) follow the same
rules through `write_folder`: refused over an existing folder without `--overwrite` and over
their own inputs, locked (and refused while a run holds the enclosing run directory), written
aside and renamed into place.

    DIR/.lock  DIR/metrics.jsonl  DIR/summary.json  DIR/final/  DIR/checkpoints/step-XXXXXXXX/
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows (see RunDir.__enter__)
    fcntl = None

from ..errors import PlmlabError, warn
from ..hf.manifest import latest_complete
from .checkpoint import commit_dir
from .metrics import METRICS
from .state import STATE_JSON, STATE_TENSORS

RUN_ENTRIES = (METRICS, "checkpoints", "final", "summary.json", "tensorboard")
REQUIRED = (STATE_JSON, STATE_TENSORS, "config.json")  # what a checkpoint must hold to resume from


class RunDir:
    def __init__(self, out: Path | str) -> None:
        self.out = Path(out)
        self.checkpoints = self.out / "checkpoints"

    def existing(self) -> list[Path]:
        """What an earlier run (of any kind) left here."""
        return [self.out / name for name in RUN_ENTRIES if (self.out / name).exists()]

    def find_checkpoint(self) -> tuple[int, Path] | None:
        """--resume: the newest complete checkpoint; None (a new run) when DIR holds no run."""
        found = latest_complete(self.checkpoints, REQUIRED, on_skip=lambda why: warn(f"skipping checkpoint {why}"))
        if found is not None:
            return found
        if any(self.checkpoints.glob("step-*")):
            raise PlmlabError(f"no complete checkpoint under {self.checkpoints} to resume from (see above); "
                              "pass --overwrite instead of --resume to start over")
        existing = self.existing()
        if existing:
            raise PlmlabError(f"{self.out} holds a run ({', '.join(p.name for p in existing)}) but no checkpoint "
                              "to resume from; pass --overwrite instead of --resume to start over")
        warn(f"no checkpoint in {self.out}: starting a new run")
        return None

    def refuse_existing(self, overwrite: bool, what: str = "a run") -> list[Path]:
        """The earlier run's entries (to clear once set up); refused without --overwrite."""
        existing = self.existing()
        if existing and not overwrite:
            raise PlmlabError(f"{self.out} already holds {what} ({', '.join(p.name for p in existing)}); "
                              "pass --resume to continue it or --overwrite to start over")
        return existing


def clear(entries: list[Path]) -> None:
    for path in entries:
        shutil.rmtree(path) if path.is_dir() else path.unlink()


class RunLock:
    """An exclusive lock on `out/.lock` for the run's lifetime: two runs never write one dir.
    The OS drops it when the process dies, SIGKILL included. A run that stops with an error
    takes back what the lock made: the .lock file, and the folders it created if nothing else
    was written in them (a refused command leaves the disk as it found it)."""

    def __init__(self, out: Path) -> None:
        self.path, self.fd = out / ".lock", None
        self.created: list[Path] = []  # the folders made for the lock, deepest first

    def __enter__(self) -> "RunLock":
        self.created = [p for p in (self.path.parent, *self.path.parent.parents) if not p.exists()]
        had_lock = self.path.exists()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise PlmlabError(f"cannot use {self.path.parent} as the run directory: {e.strerror}") from None
        self.made_lock = not had_lock
        if fcntl is None:  # Windows: no advisory locks; run unguarded
            return self
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            raise PlmlabError(f"another plmlab process is training in {self.path.parent}") from None
        return self

    def __exit__(self, kind, *exc) -> None:
        if kind is not None and self.made_lock:
            self._take_back()  # while still holding the lock: no other run can be starting here
        os.close(self.fd)  # closing releases the lock

    def _take_back(self) -> None:
        self.path.unlink(missing_ok=True)
        for folder in self.created:
            try:
                folder.rmdir()  # only an empty one: whatever the run wrote stays
            except OSError:
                return


def write_folder(out: str | Path, write, overwrite: bool = False, inputs: tuple = (),
                 refuse_models: bool = False) -> Path:
    """`write(tmp)` makes a whole folder, which then replaces `out`, under the run-directory rules:
    an existing non-empty `out` only with `overwrite`; never one of `inputs` or a folder holding
    one; with `refuse_models`, never a model directory (a tokenizer written over a model's would
    no longer match its embeddings); while holding `out`'s lock and, when `out` sits inside a run
    directory (runs/x/final), that run's lock too, so nothing is written under a run that trains.
    What `out` held stays until the new folder is complete."""
    target = check_folder(out, overwrite, inputs, refuse_models)
    enclosing = target.parent if (target.parent / ".lock").is_file() else None
    with RunLock(enclosing) if enclosing else contextlib.nullcontext(), RunLock(target):
        return write_aside(target, write)  # a full disk (OSError: the CLI's one line) leaves what was there


def check_folder(out: str | Path, overwrite: bool = False, inputs: tuple = (), refuse_models: bool = False) -> Path:
    """write_folder's refusals, which a command can ask for before its work (see write_folder)."""
    target = Path(out)
    for source in map(Path, inputs):
        if target.resolve() == source.resolve() or source.resolve().is_relative_to(target.resolve()):
            raise PlmlabError(f"--out {out} would overwrite its input {source}; choose another directory")
    if target.exists() and not target.is_dir():
        raise PlmlabError(f"--out {out} is a file, not a directory")
    if refuse_models and target.is_dir() and ((target / "config.json").exists() or any(target.glob("*.safetensors"))):
        raise PlmlabError(f"--out {out} is a model directory; writing there would replace its tokenizer, "
                          "which its embeddings were trained with; choose another directory")
    if target.is_dir() and any(p.name != ".lock" for p in target.iterdir()) and not overwrite:
        raise PlmlabError(f"--out {out} already exists; pass --overwrite to replace it")
    return target


def write_aside(final: Path, write) -> Path:
    """`write(tmp)` into a temporary sibling of `final`, then renamed into place (what `final`
    held stays until the new one is complete; a failed write leaves no temporary behind)."""
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        commit_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
