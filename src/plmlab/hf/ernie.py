"""ERNIE checkpoints (transformers' `ernie` model type): BERT's layout under `ernie.`.

transformers' ERNIE is BERT (the same embeddings, post-LN layers, pooler, MLM and NSP heads,
key for key, with `ernie.` for `bert.` and `Ernie*` classes) plus one thing: with
`use_task_id`, a task-type embedding `embeddings.task_type_embeddings` (task_type_vocab_size
rows, ERNIE 2.0 / 3.0's task ids) added before the embedding LayerNorm. Our
`Config.task_type_vocab_size` is that table's size, 0 when `use_task_id` is false (ERNIE 1.0).
"""

from __future__ import annotations

from ..config import Config
from .adapter import Rule, copy
from .bert import OLD_BUFFERS, EncoderAdapter
from .hfconfig import HFConfig


class Ernie(EncoderAdapter):
    class_prefix = "Ernie"

    def extra_from_hf(self, hf: HFConfig) -> dict:
        use = hf.flag("use_task_id", False)
        return dict(task_type_vocab_size=hf.integer("task_type_vocab_size", 3) if use else 0,
                    pad_token_id=hf.integer("pad_token_id", 0), tokenizer="bert")  # ERNIE's vocab is WordPiece

    def config_to_hf(self, c: Config) -> dict:
        out = {**super().config_to_hf(c), "use_task_id": c.task_type_vocab_size > 0}
        if c.task_type_vocab_size:
            out["task_type_vocab_size"] = c.task_type_vocab_size
        return out

    def mismatch(self, c: Config) -> str | None:
        # BERT's checks, with the task-type table allowed (BERT refuses it: it has no place for it)
        return super().mismatch(c.replace(task_type_vocab_size=0))

    def rules(self, c: Config) -> list[Rule]:
        return super().rules(c) + [copy("embed.task_types.weight", "embeddings.task_type_embeddings.weight")]


ERNIE_ADAPTER = Ernie("ernie", "ernie.", top_level=("cls.", "classifier."),
                      ignored=("cls.predictions.decoder.bias", *OLD_BUFFERS))

ADAPTERS = [ERNIE_ADAPTER]
