"""Scale and precision for the trainer: DDP / FSDP2 under torchrun, mixed precision, compile,
activation checkpointing, a global batch in tokens, OOM back-off and an MFU estimate.

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
import sys
import warnings
from typing import Any, Callable

import torch

from ..errors import PlmlabError

PRECISIONS = ("auto", "fp32", "bf16", "bf16-mixed", "fp16-mixed")
STRATEGIES = ("ddp", "fsdp")


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
        import torch.distributed as dist

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
        import torch.distributed as dist

        return like if dist.get_backend() == "nccl" else torch.device("cpu")

    def all_sum(self, values: list[float], device: torch.device, dtype=torch.float64) -> list[float]:
        """Sum small numbers over ranks (exact for integers below 2**53)."""
        if not self.enabled:
            return list(values)
        import torch.distributed as dist

        t = torch.tensor(values, dtype=dtype, device=self._backend_device(device))
        dist.all_reduce(t)
        return t.tolist()

    def all_sum_tensor(self, t: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return t
        import torch.distributed as dist

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
            import torch.distributed as dist

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
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.initialized = False


# ---------------------------------------------------------------------------- model wrapping
def find_stacks(model: torch.nn.Module) -> list[torch.nn.Module]:
    from ..models.stack import Stack

    return [m for m in model.modules() if isinstance(m, Stack)]


def set_activation_checkpointing(model: torch.nn.Module, on: bool) -> int:
    """Recompute each block's activations in the backward pass (every Stack); returns the count."""
    stacks = find_stacks(model)
    for stack in stacks:
        stack.gradient_checkpointing = on
    return len(stacks)


def shard_fsdp(model: torch.nn.Module, dist: Dist, mp_dtype: torch.dtype | None = None) -> torch.nn.Module:
    """FSDP2: every block its own unit, the rest (embeddings, tied head, norms) in the root unit.
    In place: the parameters become DTensors (build the optimizer afterwards)."""
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


def wrap_ddp(model: torch.nn.Module, device: torch.device, find_unused: bool) -> torch.nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


def full_model_state(model: torch.nn.Module, fsdp: bool) -> dict[str, torch.Tensor] | None:
    """The full (unsharded, CPU) weights; a collective under FSDP (every rank must call it)."""
    if not fsdp:
        return None
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


def load_full_optimizer_state(model, optimizer, state: dict, names: list[str]) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    fqn = {i: name for i, name in enumerate(names)}
    keyed = {"state": {fqn[int(k)]: v for k, v in state["state"].items()},
             "param_groups": [{**g, "params": [fqn[int(i)] for i in g["params"]]} for g in state["param_groups"]]}
    set_optimizer_state_dict(model, optimizer, optim_state_dict=keyed,
                             options=StateDictOptions(full_state_dict=True))


def param_names(model: torch.nn.Module) -> list[str]:
    """Names in the order `optim.param_groups` lists parameters (decayed first, then the rest)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [n for n, p in named if p.dim() >= 2] + [n for n, p in named if p.dim() < 2]


# ---------------------------------------------------------------------------- precision
class Precision:
    """autocast dtype and (fp16) a GradScaler for the run's --precision."""

    def __init__(self, precision: str, device: torch.device, warn: Callable[[str], None] | None = None) -> None:
        if precision == "auto":
            precision = "bf16-mixed" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
        if precision == "bf16":
            precision = "bf16-mixed"
        self.name = precision
        self.dtype = {"bf16-mixed": torch.bfloat16, "fp16-mixed": torch.float16}.get(precision)
        if precision == "fp16-mixed" and device.type != "cuda":
            raise PlmlabError("--precision fp16-mixed needs a CUDA device (on CPU use fp32, or bf16-mixed)")
        if precision == "bf16-mixed" and device.type == "cpu" and warn is not None:
            warn("warning: --precision bf16-mixed on CPU is emulated and can be far slower than fp32")
        self.device_type = device.type
        self.scaler = torch.amp.GradScaler("cuda") if precision == "fp16-mixed" else None

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype or torch.bfloat16, enabled=self.dtype is not None)


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


# ---------------------------------------------------------------------------- MFU
# Dense peak FLOP/s per GPU for bf16/fp16 tensor-core math (fp32 runs use TF32 peaks).
PEAK_FLOPS = {  # substring of torch.cuda.get_device_name() -> (bf16/fp16, tf32)
    "H200": (989e12, 494.7e12), "H100": (989e12, 494.7e12), "GH200": (989e12, 494.7e12),
    "A100": (312e12, 156e12), "A10G": (70e12, 35e12), "L40S": (362e12, 183e12), "L4": (121e12, 60e12),
    "V100": (125e12, 15.7e12), "T4": (65e12, 8.1e12), "RTX 4090": (165e12, 82.6e12), "RTX 3090": (71e12, 35.6e12),
}


def default_peak_flops(device: torch.device, precision: Precision) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key in sorted(PEAK_FLOPS, key=len, reverse=True):
        if key in name:
            bf16, tf32 = PEAK_FLOPS[key]
            return bf16 if precision.dtype is not None else tf32
    return None


def flops_per_token(n_params: int, n_layers: int, d_model: int, seq_len: int) -> float:
    """Training FLOPs per token: 6N for the matmuls (forward + backward) plus the attention
    scores and mixing, 12 * layers * d_model * seq_len (PaLM, appendix B)."""
    return 6.0 * n_params + 12.0 * n_layers * d_model * seq_len


# ---------------------------------------------------------------------------- OOM
def is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


def warn(message: str) -> None:
    print(f"plmlab: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def quiet_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# ---------------------------------------------------------------------------- the trainer's view
class ScaleContext:
    """What the Trainer needs from all of the above for one step: the micro-batch share of this
    rank, the global target count, no_sync during accumulation, the (scaled) backward, the
    optimizer step, OOM back-off and the MFU estimate. `ScaleContext.single()` is the plain
    one-process fp32/bf16 behaviour the trainer had before."""

    def __init__(self, options, dist: Dist, device: torch.device, precision: Precision,
                 flops_per_token: float | None = None, peak_flops: float | None = None) -> None:
        self.options, self.dist, self.device, self.precision = options, dist, device, precision
        self.flops_per_token, self.peak_flops = flops_per_token, peak_flops
        self.fsdp = dist.enabled and options.strategy == "fsdp"
        self.ddp: torch.nn.Module | None = None  # the DDP wrapper (for no_sync)
        self.oom_backoff = bool(getattr(options, "oom_backoff", False))

    @classmethod
    def single(cls, options, device: torch.device) -> "ScaleContext":
        return cls(options, Dist(), device, Precision(options.precision, device))

    # -- set-up (run.py)
    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """Activation checkpointing, FSDP2 sharding (in place) or DDP, then torch.compile.
        Returns the module to call for training; `model` stays the one to save."""
        o = self.options
        if o.activation_checkpointing:
            if not set_activation_checkpointing(model, True):
                warn("warning: --activation-checkpointing: this model has no block stack to checkpoint")
        wrapped = model
        if self.fsdp:
            wrapped = shard_fsdp(model, self.dist)
        elif self.dist.enabled:
            # Encoders may leave heads unused by an objective (the pooler under plain MLM).
            find_unused = getattr(getattr(model, "config", None), "arch", "decoder") != "decoder"
            wrapped = self.ddp = wrap_ddp(model, self.device, find_unused)
        if o.compile:
            wrapped = torch.compile(wrapped)
        return wrapped

    def load_optimizer(self, model, optimizer, state: dict) -> None:
        if self.fsdp:
            load_full_optimizer_state(model, optimizer, state, param_names(model))
        else:
            optimizer.load_state_dict(state)

    def scaler_state(self) -> dict | None:
        """fp16's loss scale (JSON numbers), so a resumed run goes on with the same scale."""
        return None if self.precision.scaler is None else dict(self.precision.scaler.state_dict())

    def load_scaler_state(self, state: dict | None) -> None:
        if self.precision.scaler is not None and state:
            self.precision.scaler.load_state_dict(state)

    # -- one step (loop.py)
    def take(self, order, batch_size: int) -> list:
        """This rank's examples of the next global micro-batch (batch_size x world examples)."""
        return self.dist.take(order.take(batch_size * self.dist.world))

    def global_counts(self, targets: int, tokens: int) -> tuple[int, int]:
        if not self.dist.enabled:
            return targets, tokens
        t, n = self.dist.all_sum([targets, tokens], self.device)
        return int(t), int(n)

    def no_sync(self, last: bool):
        if self.ddp is not None and not last:
            return self.ddp.no_sync()
        if self.fsdp and not last:
            return _fsdp_no_sync(self.model_for_sync)
        return contextlib.nullcontext()

    model_for_sync = None  # the FSDP root (set by run.py)

    def micro_loss(self, output, n: int, total: int) -> torch.Tensor:
        """This micro-batch's share of the step's token-mean loss (before the world factor)."""
        if n == 0:  # every rank must run backward (DDP / FSDP collectives): a zero with a graph
            return output.logits.float().sum() * 0.0
        loss = output.loss * (n / total)
        if self.ddp is not None:
            # DDP (find_unused_parameters) expects every output it sees to reach the loss: tie the
            # outputs an objective ignores (the pooler / pair head under plain MLM) in with weight 0.
            for extra in (output.pooled, output.pair_logits):
                if isinstance(extra, torch.Tensor) and extra.requires_grad:
                    loss = loss + extra.float().sum() * 0.0
        return loss

    def backward(self, loss: torch.Tensor) -> None:
        # DDP / FSDP average gradients over ranks; the loss is a sum of per-rank shares.
        if self.dist.enabled:
            loss = loss * self.dist.world
        if self.precision.scaler is not None:
            loss = self.precision.scaler.scale(loss)
        loss.backward()

    def reduce_loss(self, loss_sum: torch.Tensor) -> torch.Tensor:
        return self.dist.all_sum_tensor(loss_sum) if self.dist.enabled else loss_sum

    def unscale(self, optimizer) -> None:
        if self.precision.scaler is not None:
            self.precision.scaler.unscale_(optimizer)

    def finite(self, ok: bool) -> bool:
        """The skip decision, agreed by every rank (any rank's non-finite value skips the step)."""
        return self.dist.agree(ok)

    def step(self, optimizer, finite: bool) -> None:
        scaler = self.precision.scaler
        if scaler is None:
            if finite:
                optimizer.step()
            return
        if finite:
            scaler.step(optimizer)
        scaler.update()

    def mfu(self, tokens_per_s: float) -> float | None:
        """Model FLOPs utilisation over all ranks (None without a known peak)."""
        if not self.peak_flops or not self.flops_per_token:
            return None
        return self.flops_per_token * tokens_per_s / (self.peak_flops * self.dist.world)


def _fsdp_no_sync(model):
    """FSDP2: skip the reduce-scatter for all but the last micro-batch."""
    @contextlib.contextmanager
    def ctx():
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    return ctx()


def make_scale(options, dist: Dist, device: torch.device, config, n_params: int) -> ScaleContext:
    precision = Precision(options.precision, device, warn=warn if dist.is_main else None)
    n_layers = config.n_layers + (config.n_decoder_layers or config.n_layers if config.arch == "encoder-decoder" else 0)
    fpt = flops_per_token(n_params, n_layers, config.d_model, options.seq_len)
    peak = options.peak_flops or default_peak_flops(device, precision)
    return ScaleContext(options, dist, device, precision, fpt, peak)
