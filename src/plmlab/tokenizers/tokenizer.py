"""The `Tokenizer` wrapper: a `tokenizers.Tokenizer` plus its special tokens, saved so that
transformers loads the directory and gives the same ids."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

import tokenizers as hf

from plmlab.data.files import write_text_atomic
from plmlab.tokenizers.styles import EOT, ROLES, STYLES, Style

_SENTINEL = re.compile(r"^<extra_id_(\d+)>$")


class Tokenizer:
    """A ``tokenizers.Tokenizer`` plus what plmlab needs to know about its special tokens.

    ``special_tokens`` maps a role (``pad``, ``eos``, ``mask``, GLM's ``gmask`` ...) to its token
    string. ``special_ids`` maps those roles to ids, plus any other special token (keyed by its
    text) except T5 sentinels, which are in ``sentinel_ids`` (``<extra_id_0>`` first).
    ``options`` are the training options (``lowercase`` ...), saved so transformers rebuilds the
    same pipeline. ``chat_template`` is saved where transformers reads it (tokenizer_config.json).
    ``model_max_length`` is tokenizer_config.json's, as transformers reads it (None: the directory
    gives none, which transformers reads as no limit; none is saved then).

    ``encode`` gives a text's ids and nothing else, as ``AutoTokenizer(text)`` does: padding and
    truncation stored in a tokenizer.json (all-MiniLM-L6-v2 stores fixed padding to 128 and
    truncation at 128) are dropped, as transformers resets them before every call that does not ask
    for them (``set_truncation_and_padding``). Kept, they made every text 128 ids, mostly attended
    padding, and cut longer ones silently. The model's limit is enforced where a text meets the
    model (``pipelines.encode``, fine-tuning): one error line, or the cut ``--truncate`` asks for.
    """

    def __init__(self, backend: hf.Tokenizer, style: str = "custom",
                 special_tokens: dict[str, str] | None = None, model_max_length: int | None = None,
                 options: dict | None = None, chat_template: str | None = None):
        backend.no_padding()
        backend.no_truncation()
        self.backend, self.style, self.options = backend, style, dict(options or {})
        self.chat_template = chat_template  # Jinja (tokenizers/chat.py); None: the style's default
        if special_tokens is None:
            special_tokens = guess_roles(backend)
        self.special_tokens = dict(special_tokens)
        self.model_max_length = model_max_length
        added = backend.get_added_tokens_decoder()  # id -> AddedToken
        numbered = [(int(m.group(1)), i) for i, t in added.items() if (m := _SENTINEL.match(t.content))]
        self.sentinel_ids = [i for _, i in sorted(numbered)]  # <extra_id_0> first
        self.special_ids = {}
        for role, token in self.special_tokens.items():
            if (i := backend.token_to_id(token)) is not None:
                self.special_ids[role] = i
        for i, t in sorted(added.items()):  # other special tokens, keyed by their text
            if t.special and i not in self.special_ids.values() and i not in self.sentinel_ids:
                self.special_ids[t.content] = i
        for role in ROLES:
            setattr(self, f"{role}_id", self.special_ids.get(role))

    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included (the embedding table needs at least this)."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.backend.encode(text, add_special_tokens=add_special_tokens).ids

    def encode_batch(self, texts: list[str], add_special_tokens: bool = False) -> list[list[int]]:
        """Encode many texts in parallel (Rust threads); no special tokens by default."""
        encodings = self.backend.encode_batch_fast(list(texts), add_special_tokens=add_special_tokens)
        return [e.ids for e in encodings]

    def encode_pair(self, a: str, b: str, add_special_tokens: bool = True) -> tuple[list[int], list[int]]:
        """(ids, token_type_ids) of a text pair, wrapped as the style does (BERT: [CLS] a [SEP] b [SEP])."""
        e = self.backend.encode(a, b, add_special_tokens=add_special_tokens)
        return e.ids, e.type_ids

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def tokenize(self, text: str) -> list[str]:
        return self.backend.encode(text, add_special_tokens=False).tokens

    def id_to_token(self, i: int) -> str | None:
        return self.backend.id_to_token(int(i))

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        return [self.backend.id_to_token(int(i)) for i in ids]

    def fingerprint(self) -> str:
        """sha256 of the serialised tokenizer: the cache key of anything tokenized with it."""
        return hashlib.sha256(self.backend.to_str().encode()).hexdigest()

    def save(self, directory: str | os.PathLike) -> None:
        """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        named = {f"{r}_token": t for r, t in self.special_tokens.items() if r in ROLES}
        extra = [t for r, t in self.special_tokens.items() if r not in ROLES and t not in named.values()]
        extra += [self.id_to_token(i) for i in self.sentinel_ids]
        spec = STYLES.get(self.style, Style("", {}, None))
        config = {
            "tokenizer_class": spec.hf_class,
            **({"model_max_length": self.model_max_length} if self.model_max_length is not None else {}),
            **named,
            "additional_special_tokens": extra,
            "clean_up_tokenization_spaces": False,
            # Family classes (BertTokenizer ...) rebuild their pipeline from these flags.
            **{key: self.options[opt] for key, opt in spec.hf_options.items() if opt in self.options},
            "plmlab": {"style": self.style, "special_tokens": self.special_tokens, "options": self.options},
        }
        if self.style == "t5":
            config["extra_ids"] = len(self.sentinel_ids)
        if self.chat_template:
            config["chat_template"] = self.chat_template
        write_text_atomic(folder / "tokenizer.json", self.backend.to_str(pretty=True))
        write_text_atomic(folder / "tokenizer_config.json", _json(config))
        special_map = {**named, "additional_special_tokens": extra}
        write_text_atomic(folder / "special_tokens_map.json", _json(special_map))

    def __repr__(self) -> str:
        return f"Tokenizer(style={self.style!r}, vocab_size={self.vocab_size})"


def guess_roles(backend: hf.Tokenizer) -> dict[str, str]:
    """Roles from well-known token strings, for a tokenizer.json that came without a config."""
    known = {"pad": ["[PAD]", "<pad>"], "unk": ["[UNK]", "<unk>"], "cls": ["[CLS]"], "sep": ["[SEP]"],
             "mask": ["[MASK]", "<mask>"], "bos": ["<s>", "<|begin_of_text|>", EOT],
             "eos": ["</s>", "<|end_of_text|>", EOT]}
    roles = {}
    for role, candidates in known.items():
        found = [t for t in candidates if backend.token_to_id(t) is not None]
        if found:
            roles[role] = found[0]
    return roles


def _json(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)
