"""Tokenizer styles: what defines each family's tokenizer (algorithm, special tokens and their
id order, what encode adds), and the post-processor that adds it."""

from __future__ import annotations

from dataclasses import dataclass, field

import tokenizers as hf
from tokenizers import AddedToken, processors

from plmlab.errors import PlmlabError

ROLES = ("pad", "bos", "eos", "unk", "mask", "cls", "sep")  # the roles transformers names
DEFAULT_VOCAB_SIZE = 8192
EOT = "<|endoftext|>"


@dataclass(frozen=True)
class Style:
    """What defines a tokenizer family: algorithm, specials (role -> token; dict order is the
    id order), post-processing template (single, pair) and the transformers class name."""

    algorithm: str  # "bpe" (byte-level) | "wordpiece" | "unigram"
    specials: dict[str, str]
    template: tuple[str, str] | None  # None: no special tokens added by encode
    hf_class: str = "PreTrainedTokenizerFast"
    model_max_length: int = 512
    lstrip: tuple[str, ...] = ()  # specials that swallow the space before them ("a <mask>")
    options: dict = field(default_factory=dict)  # default options for train_tokenizer
    hf_options: dict = field(default_factory=dict)  # tokenizer_config key -> our option name
    # specials added after training, so they take the last ids (BART's <mask>). Out of the repr:
    # the built-in tokenizer cache keys on it, and the styles without one keep their cached entries.
    last: tuple[str, ...] = field(default=(), repr=False)


_CLS_SEP = ("[CLS] $A [SEP]", "[CLS] $A [SEP] $B:1 [SEP]:1")
STYLES: dict[str, Style] = {
    "gpt2": Style("bpe", {"bos": EOT, "eos": EOT, "unk": EOT}, None, "GPT2TokenizerFast", 1024,
                  options={"add_prefix_space": False}, hf_options={"add_prefix_space": "add_prefix_space"}),
    "llama": Style("bpe", {"unk": "<unk>", "bos": "<s>", "eos": "</s>"},
                   ("<s> $A", "<s> $A <s>:1 $B:1"), model_max_length=2048,
                   options={"add_prefix_space": False}),
    "bert": Style("wordpiece", {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]",
                                "mask": "[MASK]"}, _CLS_SEP, "BertTokenizerFast",
                  options={"lowercase": True, "strip_accents": None},
                  hf_options={"do_lower_case": "lowercase", "strip_accents": "strip_accents"}),
    "roberta": Style("bpe", {"bos": "<s>", "cls": "<s>", "pad": "<pad>", "eos": "</s>",
                             "sep": "</s>", "unk": "<unk>", "mask": "<mask>"}, ("roberta", ""),
                     "RobertaTokenizerFast", lstrip=("<mask>",), options={"add_prefix_space": False},
                     hf_options={"add_prefix_space": "add_prefix_space"}),
    # fairseq / transformers BART: RoBERTa's specials, but <mask> is the vocabulary's last id
    # (bart-base: 50265 ids, <s>=0 <pad>=1 </s>=2 <unk>=3, <mask>=50264), appended after the BPE.
    "bart": Style("bpe", {"bos": "<s>", "cls": "<s>", "pad": "<pad>", "eos": "</s>", "sep": "</s>",
                          "unk": "<unk>", "mask": "<mask>"}, ("roberta", ""), "BartTokenizerFast", 1024,
                  lstrip=("<mask>",), options={"add_prefix_space": False},
                  hf_options={"add_prefix_space": "add_prefix_space"}, last=("<mask>",)),
    "albert": Style("unigram", {"pad": "<pad>", "unk": "<unk>", "cls": "[CLS]", "bos": "[CLS]",
                                "sep": "[SEP]", "eos": "[SEP]", "mask": "[MASK]"}, _CLS_SEP,
                    "AlbertTokenizerFast", lstrip=("[MASK]",),
                    options={"lowercase": True, "keep_accents": False},
                    hf_options={"do_lower_case": "lowercase", "keep_accents": "keep_accents"}),
    "t5": Style("unigram", {"pad": "<pad>", "eos": "</s>", "unk": "<unk>"},
                ("$A </s>", "$A </s> $B </s>"), options={"extra_ids": 100}),
    "glm": Style("bpe", {"eos": EOT, "pad": EOT, "mask": "[MASK]", "smask": "[sMASK]",
                         "gmask": "[gMASK]", "sop": "<|startofpiece|>", "eop": "<|endofpiece|>",
                         "cls": "[CLS]", "unk": "<unk>"},
                 ("[CLS] $A", f"[CLS] $A {EOT} $B:1"), model_max_length=1024,
                 options={"add_prefix_space": False}),
}


def get_style(style: str) -> Style:
    """The style named ``style``, or one line naming the styles there are."""
    if style not in STYLES:
        raise PlmlabError(f"unknown tokenizer style {style!r}; choose one of {', '.join(STYLES)}")
    return STYLES[style]


def special_token(token: str, lstrip: bool = False) -> AddedToken:
    return AddedToken(token, special=True, normalized=False, lstrip=lstrip)


def special_tokens_of(spec: Style, last: bool = False) -> list[AddedToken]:
    """The specials that come before the learned pieces (`last`: those added after them)."""
    unique = dict.fromkeys(spec.specials.values())  # roles may share a token; keep first-use order
    return [special_token(t, lstrip=t in spec.lstrip) for t in unique if (t in spec.last) == last]


def post_processor(spec: Style, backend: hf.Tokenizer, opts: dict):
    """What ``encode`` adds for ``spec`` (its template), with the ids ``backend`` gives its specials."""
    ids = {t: backend.token_to_id(t) for t in spec.specials.values()}
    if spec.template is None:  # GPT-2: nothing added; ByteLevel only fixes offsets
        return processors.ByteLevel(trim_offsets=False)
    if spec.template[0] == "roberta":
        sep, cls = spec.specials["sep"], spec.specials["cls"]
        return processors.RobertaProcessing((sep, ids[sep]), (cls, ids[cls]), trim_offsets=True,
                                            add_prefix_space=opts["add_prefix_space"])
    single, pair = spec.template
    used = {piece.split(":")[0] for piece in f"{single} {pair}".split()} - {"$A", "$B"}
    return processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=[(t, ids[t]) for t in ids if t in used])
