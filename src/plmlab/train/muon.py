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
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import PlmlabError
from ..nn.block import Block
from .optim import adamw, decay_groups

MUON_MOMENTUM = 0.95  # Keller Jordan's Muon and modded-nanogpt


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
    """torch.optim.Muon over `muon_params`, torch.optim.AdamW over the rest, as one optimizer."""

    def __init__(self, model: nn.Module, lr: float, muon_lr: float, weight_decay: float,
                 betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8) -> None:
        muon, rest = split_params(model)
        if not muon:
            raise PlmlabError("--optimizer muon: the model has no weight matrices inside its blocks; "
                              "use --optimizer adamw")
        # Decoupled weight decay on the matrices as AdamW has it (lr x wd per step).
        self.muon = torch.optim.Muon([{"params": muon, "lr_scale": muon_lr / lr}], lr=muon_lr,
                                     weight_decay=weight_decay, momentum=MUON_MOMENTUM, nesterov=True,
                                     adjust_lr_fn="original")
        groups = [g for g in decay_groups(rest, weight_decay) if g["params"]]
        self.adamw = adamw(groups, lr, betas, eps)
        self.optimizers = (self.muon, self.adamw)

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

