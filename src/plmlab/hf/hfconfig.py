"""A Hugging Face `config.json` read with its types checked, and the activation names it uses.

A hand-edited or foreign config.json can say `"n_layer": "two"`, `2.7` or `null`, or be a list
rather than an object. Every family's translation reads its keys through `HFConfig`, so each
such value (and each missing required key) is one line naming the file and the key, instead
of a traceback, or a string that `4 * hf["n_embd"]` silently repeats four times.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import describe_value, typed_value
from ..errors import PlmlabError

# transformers' ACT2FN names -> ours (plmlab.nn.mlp.ACTIVATIONS). GELU is the exact erf form
# ("gelu", "gelu_python"); every tanh approximation of it (GPT-2's "gelu_new", the fused
# "gelu_pytorch_tanh", "gelu_fast", "gelu_accurate" with rounded constants) is our "gelu_tanh".
# "quick_gelu" (x * sigmoid(1.702 x)) is a different function and is not mapped.
HF_ACT = {
    "gelu": "gelu", "gelu_python": "gelu",
    "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_python_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh", "gelu_accurate": "gelu_tanh",
    "relu": "relu", "silu": "silu", "swish": "silu",
}
# ours -> the ACT2FN name that computes the same kernel: "gelu_pytorch_tanh" is
# F.gelu(approximate="tanh"), bit for bit what our "gelu_tanh" runs.
ACT_HF = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "relu": "relu", "silu": "silu"}

REQUIRED = object()  # a key with no default: its absence is an error


class HFConfig:
    """Typed access to a config.json's keys; `default=None` makes a key optional (null allowed)."""

    def __init__(self, data: Any, source: str | Path) -> None:
        self.source = str(source)
        if not isinstance(data, dict):
            raise PlmlabError(f"{self.source}: expected a JSON object of config fields, got {describe_value(data)}")
        self.data = data

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def error(self, message: str) -> PlmlabError:
        return PlmlabError(f"{self.source}: {message}")

    def typed(self, key: str, default: Any, type_name: str) -> Any:
        if key not in self.data and default is REQUIRED:
            raise self.error(f"missing field {key!r} for model_type {self.data.get('model_type')!r}")
        value = self.data.get(key, default)
        try:
            return typed_value(value, type_name if default is not None else type_name + " | None")
        except ValueError as e:
            raise self.error(f"{key} {e}") from None

    def integer(self, key: str, default: Any = REQUIRED) -> int | None:
        return self.typed(key, default, "int")

    def number(self, key: str, default: Any = REQUIRED) -> float | None:
        return self.typed(key, default, "float")

    def flag(self, key: str, default: Any = REQUIRED) -> bool | None:
        return self.typed(key, default, "bool")

    def string(self, key: str, default: Any = REQUIRED) -> str | None:
        return self.typed(key, default, "str")

    def mapping(self, key: str) -> dict | None:
        return self.typed(key, None, "dict")

    def token_id(self, key: str, default: int | None = None) -> int | None:
        """A special token id; LLaMA-3 and GLM-4 configs list several EOS ids, the first being
        the primary one."""
        value = self.data.get(key, default)
        if isinstance(value, list) and value:
            value = value[0]
        try:
            return typed_value(value, "int | None")
        except ValueError as e:
            raise self.error(f"{key} {e}") from None

    def architecture(self, default: str) -> str:
        """The first entry of `architectures`: which head class the checkpoint was saved as."""
        value = self.data.get("architectures") or [default]
        if not isinstance(value, list) or not isinstance(value[0], str):
            raise self.error(f"architectures must be a list of class names, got {describe_value(value)}")
        return value[0]

    def activation(self, key: str, default: str) -> str:
        name = self.string(key, default)
        if name not in HF_ACT:
            raise self.error(f"{key}={name!r} is not supported (plmlab maps {', '.join(HF_ACT)})")
        return HF_ACT[name]
