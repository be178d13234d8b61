"""Masks: attention (padding, causal with a KV-cache offset, explicit 2-D masks as GLM's),
positions counted over a padding mask, and the label value that marks "no loss here".

Convention: a boolean mask is True where a query may attend to a key, shaped
(B, 1, Tq, Tk) so it broadcasts over heads. Returning `(None, True)` lets SDPA use its
fused causal path; `(None, False)` means "attend to everything".
"""

from __future__ import annotations

import torch

# Labels of this value carry no loss (PyTorch's cross_entropy default; transformers' convention).
IGNORE_INDEX = -100


def positions_from_padding(mask: torch.Tensor) -> torch.Tensor:
    """Positions of a (left-)padded batch counted over real tokens only (transformers:
    cumsum - 1); padding gets position 0 (it is never attended to). mask: (B, T), 1 = token."""
    return (mask.long().cumsum(dim=-1) - 1).clamp(min=0)  # (B, T)


def build_mask(
    q_len: int,
    k_len: int,
    causal: bool,
    padding: torch.Tensor | None = None,
    explicit: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor | None, bool]:
    """Return (mask, is_causal) for queries at positions k_len - q_len .. k_len - 1.

    padding: (B, k_len) with 1 for real tokens, 0 for padding (HF `attention_mask`).
    explicit: (B, q_len, k_len) objective-defined mask, 1 = may attend (GLM blank infilling).
        It is complete: a causal stack does not add its causal rule on top (GLM's Part A is
        bidirectional inside a decoder).
    """
    if padding is not None and bool(padding.all()):
        padding = None
    if explicit is None and padding is None:
        if not causal or q_len == 1:
            return None, False
        if q_len == k_len:
            return None, True
    keep = torch.ones(1, 1, q_len, k_len, dtype=torch.bool, device=device)
    if explicit is not None:
        keep = keep & explicit.bool()[:, None]
    if causal and explicit is None:
        offset = k_len - q_len
        query = torch.arange(offset, k_len, device=device)[:, None]
        key = torch.arange(k_len, device=device)[None, :]
        keep = keep & (key <= query)
    if padding is not None:
        keep = keep & padding.bool()[:, None, None, :]
    # A row with no visible key (a padding query) would give NaN in softmax; let it see all
    # keys instead: its output is ignored anyway, and the NaN would poison gradients.
    return keep | ~keep.any(dim=-1, keepdim=True), False


def additive(mask: torch.Tensor | None, bias: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Fold a boolean mask into an additive bias (T5 adds its position bias to the scores)."""
    bias = bias.to(dtype)
    if mask is None:
        return bias
    return bias.masked_fill(~mask, torch.finfo(dtype).min)


def causal_mask(q_len: int, k_len: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Boolean (1, 1, q_len, k_len) causal mask for queries at the last q_len positions."""
    query = torch.arange(k_len - q_len, k_len, device=device)[:, None]
    return (torch.arange(k_len, device=device)[None, :] <= query)[None, None]
