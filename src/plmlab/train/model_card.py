"""A model folder's README.md: a short model card, as the Hugging Face Hub shows one.

`write_model_card(folder, facts)` writes it next to the weights that `save_pretrained` put in
`folder` (train/saving.py calls it inside final/'s temporary folder, so the card is renamed into
place with the weights or not at all). `facts` is what the run knows:

    title        the heading ("gpt-mini pretrained with plmlab")
    about        a sentence under it
    rows         {name: value} shown as a table, in order (architecture, parameters, corpus ...)
    path         where the folder is used from (the load snippets name it)
    try          a plmlab command that shows the model at work

How to load it comes from the folder's own config.json: with plmlab always, and with
transformers when the layout is one of its classes (`architectures`).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..config import Config
from ..families import family_of

# Layouts transformers has no class for: plmlab's own, and ChatGLM's (the authors' remote code).
NOT_IN_TRANSFORMERS = ("plmlab", "chatglm")


def architecture_lines(c: Config) -> list[str]:
    """A config in two lines (`plmlab info` prints them, model cards show them)."""
    first = (f"{c.arch}, {family_of(c).layers(c)}, d_model {c.d_model}, {c.n_heads} heads ({c.kv_heads} KV, "
             f"head_dim {c.dim_head}), d_ff {c.d_ff}")
    second = (f"norm {c.norm} ({c.norm_placement}), positions {c.position}, activation {c.activation}"
              f"{' gated' if c.gated_mlp else ''}, vocab {c.vocab_size}, context {c.max_positions}, "
              f"{'tied' if c.tie_embeddings else 'untied'} output")
    return [first, second]


def write_model_card(folder: Path, facts: dict) -> Path:
    """folder/README.md from `facts` (see the module docstring); returns its path. Written in
    place: the caller makes the folder appear whole (save_final renames it into place)."""
    folder = Path(folder)
    layout = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    lines = [f"# {facts['title']}", "", facts["about"], "", "| | |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in facts["rows"].items()]
    lines += ["", "## Use it", "", *_loading(facts["path"], layout)]
    if facts.get("try"):
        lines += ["", "From the command line:", "", "```bash", facts["try"], "```"]
    path = folder / "README.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _loading(where: str, layout: dict) -> list[str]:
    lines = ["With plmlab:", "", "```python", "import plmlab", "",
             f"model = plmlab.load_pretrained({where!r})",
             f"tokenizer = plmlab.load_tokenizer({where!r})", "```"]
    architecture = (layout.get("architectures") or [None])[0]
    if layout.get("model_type") in NOT_IN_TRANSFORMERS or not architecture:
        return lines + ["", "(This layout has no class in transformers: load it with plmlab.)"]
    return lines + ["", "With transformers:", "", "```python",
                    f"from transformers import AutoTokenizer, {architecture}", "",
                    f"model = {architecture}.from_pretrained({where!r})",
                    f"tokenizer = AutoTokenizer.from_pretrained({where!r})", "```"]
