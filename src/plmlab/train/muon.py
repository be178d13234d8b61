"""Muon for the hidden matrices, AdamW for everything else: one optimizer object.

Muon (Keller Jordan 2024, "Muon: An optimizer for hidden layers in neural networks") takes the
momentum of a weight matrix's gradient and replaces it by its nearest semi-orthogonal matrix
(five Newton-Schulz iterations), so every direction of the update moves at the same rate. It
is meant for the 2-D weights *inside* the network only: the embeddings, the output layer
and the gains and biases keep a standard optimizer (the Muon write-up, "Muon is for hidden
layers"; modded-nanogpt does the same). Here that means the `nn.Linear` weights of every
`Block` (attention and MLP projections, cross-attention included) go to PyTorch's own
`torch.optim.Muon` (lr 0.02, momentum 0.95, Nesterov, Keller's shape scaling
sqrt(max(1, rows / cols))); every other parameter goes to AdamW with nanoGPT's weight-decay
rule (`optim.param_groups`).

`MuonAdamW` looks like one optimizer to the Trainer, the checkpoint and the GradScaler: it
steps, zeroes, lists its `param_groups` (clipping and `set_lr` walk them) and has a nested
`state_dict` ({"muon": ..., "adamw": ...}). The schedule gives one number per step; each group
scales it by its `lr_scale` (Muon's groups carry muon_lr / lr), so both follow one curve.

Precision of Newton-Schulz. `torch.optim.Muon` always iterates in bf16 (`grad.bfloat16()` in
`torch/optim/_muon.py`), which is fast on GPUs and on CPUs with native bf16 matmul (AVX512-BF16,
AMX) and ruinous elsewhere: on an AVX2 CPU a bf16 512x512 matmul ran 65x slower than fp32 (1.3
against 85 GFLOP/s, one thread), which made the default optimizer's step ~6x an AdamW step.
`Muon` here is the same update with the iteration's dtype as a choice: `ns_dtype="auto"` takes
bf16 on CUDA and on CPUs with native bf16, fp32 everywhere else (`newton_schulz_dtype`). fp32 is
the more accurate of the two (the bf16 iteration is an approximation the Muon write-up accepts
for speed), and in bf16 the update equals torch.optim.Muon's bit for bit (tests/e2e/test_optim_muon.py).
In fp32 the iteration runs on the Gram matrix (`newton_schulz_gram`): the same polynomial with
26-38 % fewer flops on rectangular matrices, about 30 % less time for the -mini presets.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import PlmlabError
from ..nn.block import Block
from .optim import adamw, decay_groups

MUON_MOMENTUM = 0.95  # Keller Jordan's Muon and modded-nanogpt
NS_DTYPES = ("auto", "bf16", "fp32")  # --muon-dtype
_DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def native_bf16(device: torch.device) -> bool:
    """Does this device multiply bf16 matrices at least as fast as fp32? CUDA does; a CPU only
    with AVX512-BF16 or AMX (torch.backends.cpu.get_cpu_capability() says AVX512 for CPUs without
    them, so it cannot decide this alone)."""
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def newton_schulz_dtype(choice: str, device: torch.device) -> str:
    """"bf16" or "fp32" for --muon-dtype `choice` (auto: bf16 where it is native, else fp32)."""
    if choice not in NS_DTYPES:
        raise PlmlabError(f"--muon-dtype must be one of {', '.join(NS_DTYPES)}, not {choice!r}")
    if choice != "auto":
        return choice
    return "bf16" if native_bf16(device) else "fp32"


def newton_schulz(update: torch.Tensor, steps: int, coefficients: tuple[float, float, float], eps: float,
                  dtype: torch.dtype) -> torch.Tensor:
    """The nearest semi-orthogonal matrix, approximately: five quintic Newton-Schulz steps (Keller
    Jordan's coefficients, as torch.optim.Muon's `_zeropower_via_newtonschulz`, in `dtype`)."""
    a, b, c = coefficients
    x = update.to(dtype)  # (rows, cols)
    tall = update.size(0) > update.size(1)
    if tall:
        x = x.T  # iterate on the wide side: the Gram matrix is the smaller one
    x = x.div(x.norm().clamp(min=eps))  # spectral norm <= Frobenius norm <= 1
    for _ in range(steps):
        gram = x @ x.T  # (r, r)
        poly = torch.addmm(gram, gram, gram, beta=b, alpha=c)  # b G + c G^2
        x = torch.addmm(x, poly, x, beta=a)  # a X + (b G + c G^2) X
    return x.T if tall else x


def newton_schulz_gram(update: torch.Tensor, steps: int, coefficients: tuple[float, float, float],
                       eps: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """`newton_schulz` iterated on the small Gram matrix: the same polynomial, fewer flops (fp32 Muon's).

    Each step is X' = (a I + b G + c G^2) X = Q X with G = X X^T, so after k steps X_k = P X_0
    with P = Q_k ... Q_1, and G' = Q G Q (Q is a polynomial in G: symmetric, commuting with it).
    Iterating G and P (r x r, r the short side) costs about 8 r^3 flops a step, plus 4 r^2 c for
    G_0 and P X_0, against 4 r^2 c + 2 r^3 a step on X (r x c): 26-38 % fewer for gpt-mini's
    3:1 and 4:1 matrices. In exact arithmetic the result is the same (fp64: 1e-14 apart); in fp32
    it is as close to the fp64 result as the iteration on X is (2.7e-6) except on a square
    random matrix, whose smallest singular values the Gram matrix squares (1e-5, still far
    closer than the bf16 iteration's 1e-2). bf16 keeps the iteration on X, torch.optim.Muon's."""
    a, b, c = coefficients
    x = update.to(dtype)
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T  # the Gram matrix of the short side
    x = x.div(x.norm().clamp(min=eps))
    gram = x @ x.T  # (r, r)
    product = None
    for step in range(steps):
        q = torch.addmm(gram, gram, gram, beta=b, alpha=c)  # b G + c G^2
        q.diagonal().add_(a)  # + a I
        product = q if product is None else q @ product
        if step < steps - 1:
            gram = q @ gram @ q  # the next step's G
    x = product @ x
    return x.T if tall else x


class Muon(torch.optim.Muon):
    """torch.optim.Muon (its options, validation and state: `momentum_buffer`), with the
    Newton-Schulz iteration in `ns_dtype` ("bf16" or "fp32"; module docstring). The dtype is an
    attribute, not a group option, so a checkpoint from a bf16 machine resumes here in fp32."""

    def __init__(self, params, ns_dtype: str = "fp32", **options) -> None:
        super().__init__(params, **options)
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self, closure=None):
        assert closure is None, "Muon here takes no closure"
        dtype = _DTYPES[self.ns_dtype]
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - momentum)  # the momentum's EMA
                update = p.grad.lerp(buf, momentum) if group["nesterov"] else buf
                if self.ns_dtype == "fp32":
                    update = newton_schulz_gram(update, group["ns_steps"], group["ns_coefficients"], group["eps"])
                else:
                    update = newton_schulz(update, group["ns_steps"], group["ns_coefficients"], group["eps"], dtype)
                p.mul_(1 - lr * group["weight_decay"])  # decoupled weight decay, as AdamW
                # Keller's shape scaling ("original"): sqrt(max(1, rows / cols))
                p.add_(update, alpha=-lr * math.sqrt(max(1, p.size(0) / p.size(1))))
        return None


def muon_params(model: nn.Module) -> list[nn.Parameter]:
    """The hidden matrices: the 2-D `nn.Linear` weights inside the blocks (each once)."""
    found: dict[int, nn.Parameter] = {}
    for block in model.modules():
        if not isinstance(block, Block):
            continue
        for module in block.modules():
            if isinstance(module, nn.Linear) and module.weight.requires_grad and module.weight.dim() == 2:
                found.setdefault(id(module.weight), module.weight)
    return list(found.values())


def split_params(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(Muon's parameters, AdamW's parameters): every trainable parameter in exactly one."""
    muon = muon_params(model)
    taken = {id(p) for p in muon}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in taken]
    return muon, rest


class MuonAdamW:
    """`Muon` over `muon_params`, torch.optim.AdamW over the rest, as one optimizer."""

    def __init__(self, model: nn.Module, lr: float, muon_lr: float, weight_decay: float,
                 betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8, ns_dtype: str = "auto") -> None:
        muon, rest = split_params(model)
        if not muon:
            raise PlmlabError("--optimizer muon: the model has no weight matrices inside its blocks; "
                              "use --optimizer adamw")
        # Decoupled weight decay on the matrices as AdamW has it (lr x wd per step).
        self.ns_dtype = newton_schulz_dtype(ns_dtype, muon[0].device)
        self.muon = Muon([{"params": muon, "lr_scale": muon_lr / lr}], ns_dtype=self.ns_dtype, lr=muon_lr,
                         weight_decay=weight_decay, momentum=MUON_MOMENTUM, nesterov=True, adjust_lr_fn="original")
        groups = [g for g in decay_groups(rest, weight_decay) if g["params"]]
        self.adamw = adamw(groups, lr, betas, eps)
        self.optimizers = (self.muon, self.adamw)

    def describe(self) -> str:
        """One line for the run's log: which dtype Newton-Schulz runs in, and why."""
        device = self.muon.param_groups[0]["params"][0].device
        where = "CUDA" if device.type == "cuda" else f"this CPU ({torch.backends.cpu.get_cpu_capability()})"
        why = f"{where} {'has' if native_bf16(device) else 'has no'} native bf16 matmul"
        return f"Muon: Newton-Schulz in {self.ns_dtype} ({why}; --muon-dtype to choose)"

    @property
    def param_groups(self) -> list[dict]:
        # The groups themselves (not copies): set_lr and GradScaler.unscale_ write to them.
        return [g for opt in self.optimizers for g in opt.param_groups]

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict) or set(state) != {"muon", "adamw"}:
            raise ValueError("not a Muon + AdamW optimizer state (expected the keys muon and adamw)")
        self.muon.load_state_dict(state["muon"])
        self.adamw.load_state_dict(state["adamw"])

