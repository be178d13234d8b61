"""Train, load and save tokenizers (a thin wrapper over Hugging Face ``tokenizers``).

Each *style* reproduces the tokenizer of one model family -- algorithm, normalisation, special
tokens and their ids, and what ``encode`` adds -- so that a saved directory loads in
``transformers.AutoTokenizer`` and gives the same ids:

======== ================== ================================================ =====================
style    algorithm          special tokens (id order)                        encode adds
======== ================== ================================================ =====================
gpt2     byte-level BPE     ``<|endoftext|>`` (bos = eos = unk)              nothing
llama    byte-level BPE     ``<unk> <s> </s>``                               ``<s> A``
bert     WordPiece          ``[PAD] [UNK] [CLS] [SEP] [MASK]``               ``[CLS] A [SEP] B [SEP]``
roberta  byte-level BPE     ``<s> <pad> </s> <unk> <mask>``                  ``<s> A </s></s> B </s>``
albert   Unigram (▁)        ``<pad> <unk> [CLS] [SEP] [MASK]``               ``[CLS] A [SEP] B [SEP]``
t5       Unigram (▁)        ``<pad> </s> <unk>`` ... ``<extra_id_99..0>``     ``A </s> B </s>``
glm      byte-level BPE     ``<|endoftext|> [MASK] [sMASK] [gMASK]``         ``[CLS] A``
                            ``<|startofpiece|> <|endofpiece|> [CLS] <unk>``
======== ================== ================================================ =====================

Notes on fidelity. LLaMA 1/2 use SentencePiece BPE with byte fallback; byte-level BPE is used
here instead (same effect: no unknown characters). GLM's tokenizer (THUDM/GLM, GPT-2 based)
wraps a single text as ``[CLS] text <|endoftext|>``; here encode stops after the text,
``[CLS] text`` (pair: ``[CLS] A <|endoftext|> B``), because an encoded *prompt* that ends in
``<|endoftext|>`` makes ``generate`` -- and transformers' pipeline on a saved directory --
start a new document instead of continuing the prompt. The GLM objectives and ``fill_blanks``
never relied on the template: they place ``[CLS]`` and ``<|endoftext|>`` around Part A by id. T5's 100 sentinels sit at the *end* of the vocabulary, counting down, so
``<extra_id_0>`` is the last id, as in Hugging Face's T5. ALBERT normalises as its
SentencePiece model does (``\\`\\``/``''`` to ``"``, NFKD, strip accents, lowercase); T5 uses
NFKC. Special tokens are added as ``AddedToken(special=True)`` so plain text never produces them.

Training is deterministic: the same texts give the same tokenizer.json, byte for byte. HF's BPE
trainer is; its WordPiece and Unigram trainers are not (hash-map order leaks into tie-breaking
and float sums), which ``wordpiece.train_wordpiece`` and ``unigram._canonical_pieces`` work around.

Modules: ``styles`` (the table above, and the post-processor each template makes), ``tokenizer``
(the :class:`Tokenizer` wrapper and its ``save``), ``train`` (``train_tokenizer``, byte-level
BPE), ``wordpiece`` and ``unigram`` (their deterministic trainers), ``load``
(``load_tokenizer``), ``builtin`` (tokenizers trained on the built-in corpus, cached).
"""

from __future__ import annotations

from plmlab.tokenizers.builtin import TRAINING_VERSION, builtin_tokenizer
from plmlab.tokenizers.load import load_tokenizer
from plmlab.tokenizers.styles import DEFAULT_VOCAB_SIZE, ROLES, STYLES, Style
from plmlab.tokenizers.tokenizer import Tokenizer
from plmlab.tokenizers.train import train_tokenizer

__all__ = ["DEFAULT_VOCAB_SIZE", "ROLES", "STYLES", "TRAINING_VERSION", "Style", "Tokenizer", "builtin_tokenizer",
           "load_tokenizer", "train_tokenizer"]
