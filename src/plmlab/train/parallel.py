"""Parallelism for the trainer: the process group (`Dist`), and DDP / FSDP2 / activation
checkpointing / torch.compile applied by small `parallelize_*` functions *before* the loop
(torchtitan's `parallelize_llama` shape), plus gathering the full state for a checkpoint.

Distributed runs start with `torchrun --nproc_per_node N -m plmlab pretrain ...`: the process
group comes from the environment (RANK, WORLD_SIZE, LOCAL_RANK; gloo on CPU, nccl on CUDA).

* `--batch-size` is sequences per micro-batch *per rank*; a global micro-batch is
  batch_size x world examples taken from the one deterministic order, and rank r takes
  examples r::world of it. So a global batch is the same set of examples for any world size,
  and 1 process with --batch-size 4 trains exactly like 2 with --batch-size 2.
* The loss of a step is the mean over every target token of the *global* batch: target
  counts are all-reduced first and each rank's micro-batch loss is weighted by
  n_local * world / n_global (DDP averages gradients over ranks), so padded / -100 labels
  weigh the same as in one process.
* Only rank 0 logs, writes metrics, checkpoints, final/ and summary.json; checkpoints hold the
  full (unsharded) model and optimizer state in the single-process format, so a run resumes on
  any number of ranks (--batch-size is rescaled to keep batch_size x world).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ..errors import PlmlabError, warn
from ..models.stack import Stack


# ---------------------------------------------------------------------------- process group
class Dist:
    """This process's place in the run: rank, world size, and the collectives the trainer needs.
    With WORLD_SIZE unset or 1 every method is a cheap no-op."""

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0, initialized: bool = False) -> None:
        self.rank, self.world, self.local_rank, self.initialized = rank, world, local_rank, initialized

    @classmethod
    def from_env(cls, device: str | None = "auto") -> "Dist":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
        cuda = device not in ("cpu",) and torch.cuda.is_available() and (device or "auto") != "cpu"
        if not dist.is_initialized():
            if cuda:
                torch.cuda.set_device(local_rank)
            dist.init_process_group("nccl" if cuda else "gloo")
        return cls(rank, world, local_rank, True)

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """cuda -> cuda:LOCAL_RANK under torchrun."""
        if self.enabled and device.type == "cuda" and device.index is None:
            return torch.device("cuda", self.local_rank)
        return device

    def _backend_device(self, like: torch.device) -> torch.device:
        return like if dist.get_backend() == "nccl" else torch.device("cpu")

    def all_sum(self, values: list[float], device: torch.device, dtype=torch.float64) -> list[float]:
        """Sum small numbers over ranks (exact for integers below 2**53)."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=dtype, device=self._backend_device(device))
        dist.all_reduce(t)
        return t.tolist()

    def all_sum_tensor(self, t: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return t
        t = t.detach().clone()
        dist.all_reduce(t)
        return t

    def agree(self, ok: bool) -> bool:
        """True only if every rank says ok (a collective: every rank must call it)."""
        if not self.enabled:
            return ok
        return self.all_sum([0.0 if ok else 1.0], torch.device("cpu"))[0] == 0.0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def main_first(self, make: Callable[[], Any]) -> Any:
        """Run `make` on rank 0, then on the others (caches written once, errors on every rank)."""
        if not self.enabled:
            return make()
        if self.is_main:
            try:
                value = make()
            except BaseException:
                self.agree(False)
                raise
            self.agree(True)
            return value
        if not self.agree(True):
            raise PlmlabError(f"rank {self.rank}: rank 0 failed to set up the run (see its error)")
        return make()

    def on_main(self, action: Callable[[], Any], what: str) -> Any:
        """Run `action` on rank 0 only; every rank learns whether it worked (and fails if not)."""
        value, ok, error = None, True, None
        if self.is_main:
            try:
                value = action()
            except BaseException as e:  # re-raised below, after the others were told
                ok, error = False, e
        if not self.agree(ok):
            if error is not None:
                raise error
            raise PlmlabError(f"rank {self.rank}: rank 0 failed while {what} (see its error)")
        return value

    def take(self, picks: list) -> list:
        """This rank's share of a global micro-batch: examples rank::world."""
        return picks[self.rank::self.world] if self.enabled else picks

    def close(self) -> None:
        if self.initialized:
            if dist.is_initialized():
                dist.destroy_process_group()
            self.initialized = False


# ---------------------------------------------------------------------------- parallelize_*
def find_stacks(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if isinstance(m, Stack)]


def set_activation_checkpointing(model: torch.nn.Module, on: bool) -> int:
    """Recompute each block's activations in the backward pass (every Stack); returns the count."""
    stacks = find_stacks(model)
    for stack in stacks:
        stack.gradient_checkpointing = on
    return len(stacks)


def parallelize_fsdp(model: torch.nn.Module, mp_dtype: torch.dtype | None = None) -> torch.nn.Module:
    """FSDP2: every block its own unit, the rest (embeddings, tied head, norms) in the root unit.
    With a mixed-precision dtype, parameters are all-gathered in it and gradients reduced in
    fp32 (`MixedPrecisionPolicy`). In place: the parameters become DTensors (build the
    optimizer afterwards)."""
    try:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    except ImportError:  # older torch
        raise PlmlabError("--strategy fsdp needs torch.distributed.fsdp.fully_shard (torch >= 2.6)") from None
    kwargs = {}
    if mp_dtype is not None:
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=mp_dtype, reduce_dtype=torch.float32)
    for stack in find_stacks(model):
        for block in stack.layers:
            fully_shard(block, **kwargs)
    fully_shard(model, **kwargs)
    return model


def parallelize_ddp(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    # Encoders may leave heads unused by an objective (the pooler under plain MLM).
    find_unused = getattr(getattr(model, "config", None), "arch", "decoder") != "decoder"
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


@dataclass
class Parallelized:
    """The module the loop calls, and what the loop needs to know of how it was wrapped."""

    module: torch.nn.Module  # DDP / FSDP / compiled wrapper (or the model itself)
    model: torch.nn.Module  # the plain model: save, evaluate on rank 0, FSDP's root unit
    ddp: torch.nn.Module | None = None
    fsdp: bool = False

    def no_sync(self, last: bool):
        """Gradient all-reduce / reduce-scatter on the last micro-batch of a step only."""
        if last:
            return contextlib.nullcontext()
        if self.ddp is not None:
            return self.ddp.no_sync()
        if self.fsdp:
            return _fsdp_no_sync(self.model)
        return contextlib.nullcontext()


def parallelize(model: torch.nn.Module, options, dist: Dist, device: torch.device,
                mp_dtype: torch.dtype | None = None) -> Parallelized:
    """Activation checkpointing, FSDP2 sharding (in place) or DDP, then torch.compile."""
    if getattr(options, "activation_checkpointing", False) and not set_activation_checkpointing(model, True):
        warn("warning: --activation-checkpointing: this model has no block stack to checkpoint")
    fsdp = dist.enabled and getattr(options, "strategy", "ddp") == "fsdp"
    wrapped, ddp = model, None
    if fsdp:
        wrapped = parallelize_fsdp(model, mp_dtype)
    elif dist.enabled:
        wrapped = ddp = parallelize_ddp(model, device)
    if getattr(options, "compile", False):
        wrapped = torch.compile(wrapped)
    return Parallelized(wrapped, model, ddp, fsdp)


@contextlib.contextmanager
def _fsdp_no_sync(model):
    """FSDP2: skip the reduce-scatter for all but the last micro-batch."""
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


# ---------------------------------------------------------------------------- full state
# torch.distributed.checkpoint.state_dict takes ~0.15 s to import (and fsdp ~1 s): imported where an
# FSDP run needs them, so single-process runs and `plmlab --help` never pay for them.
def full_model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """FSDP: the full (unsharded, CPU) weights; a collective (every rank must call it)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def full_optimizer_state(model, optimizer, names: list[str]) -> dict:
    """The optimizer state as a full, index-keyed state_dict (the single-process format)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    full = get_optimizer_state_dict(model, optimizer,
                                    options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if "state" not in full:  # ranks other than 0 (cpu_offload gathers to rank 0 only)
        return {}
    index = {name: i for i, name in enumerate(names)}
    state = {index[k]: v for k, v in full["state"].items()}
    groups = [{**g, "params": [index[n] for n in g["params"]]} for g in full["param_groups"]]
    return {"state": state, "param_groups": groups}


def load_optimizer_state(parallel: Parallelized, optimizer, state: dict) -> None:
    """A checkpoint's (single-process format) optimizer state; re-sharded under FSDP."""
    if not parallel.fsdp:
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    fqn = dict(enumerate(param_names(parallel.model)))
    keyed = {"state": {fqn[int(k)]: v for k, v in state["state"].items()},
             "param_groups": [{**g, "params": [fqn[int(i)] for i in g["params"]]} for g in state["param_groups"]]}
    set_optimizer_state_dict(parallel.model, optimizer, optim_state_dict=keyed,
                             options=StateDictOptions(full_state_dict=True))


def param_names(model: torch.nn.Module) -> list[str]:
    """Names in the order `optim.param_groups` lists parameters (decayed first, then the rest)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [n for n, p in named if p.dim() >= 2] + [n for n, p in named if p.dim() < 2]


# ---------------------------------------------------------------------------- batch geometry
def grad_accum_for(global_batch_tokens: int, batch_size: int, seq_len: int, world: int) -> int:
    per_micro = batch_size * seq_len * world
    if global_batch_tokens % per_micro:
        raise PlmlabError(f"--global-batch-tokens {global_batch_tokens} is not a multiple of batch_size x seq_len "
                          f"x world ({batch_size} x {seq_len} x {world} = {per_micro})")
    return global_batch_tokens // per_micro


def rescale_for_world(stored: dict, stored_world: int, world: int) -> dict:
    """A stored run's options seen from `world` ranks: the same global micro-batch."""
    if stored_world == world:
        return stored
    total = stored["batch_size"] * stored_world
    if total % world:
        raise PlmlabError(f"the run's global micro-batch of {total} sequences ({stored['batch_size']} x "
                          f"{stored_world} ranks) does not split over {world} ranks")
    return {**stored, "batch_size": total // world}
