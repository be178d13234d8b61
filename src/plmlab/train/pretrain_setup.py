"""Set-up of a pretraining run, fresh or from a checkpoint: the frozen options, corpus,
tokenizer, config, token shards, objective and model.

    fresh:   options.resolved() -> seed -> config -> seq_len and grad_accum resolved -> a given
             tokenizer (--tokenizer; --init-from: the source's config and tokenizer, and its weights
             after the model is built) -> corpus -> tokenizer trained (or cached) -> token shards
             -> objective -> model
    resume:  the checkpoint's options, config and tokenizer (the corpus must be the same text)
             -> token shards -> objective -> model <- the checkpoint's weights

The order is part of the run: building the model draws the initial weights from torch's
generator, right after the seed (a resumed run restores every generator afterwards). What can
be refused without the corpus is refused before it is read (a misspelt preset costs nothing).
Each stage says what it did on stderr (train/status.py).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import Config
from ..data import build_token_data, builtin_documents, corpus_fingerprint, read_corpus_with_languages
from ..errors import PlmlabError, warn
from ..hf import load_pretrained
from ..modeling import build_model
from ..objectives import get_objective
from ..tokenizers import load_tokenizer
from .init_from import InitSource, find_source, init_config, init_tokenizer, load_source_weights
from .objective_setup import build_objective, check_objective_fits, check_objective_options
from .options import DEFAULTS, MAX_DEFAULT_SEQ_LEN, PretrainOptions, check_option_types
from .parallel import Dist, grad_accum_for, rescale_for_world
from .precision import Precision
from .rundir import RunDir
from .saving import STATE_FORMAT
from .setup import build_config, choose_device, default_threads, make_tokenizer, threads_text
from .state import read_trainer_info
from .status import Status
from .task import PretrainTask


@dataclass
class PretrainSetup:
    options: PretrainOptions  # frozen and fully resolved
    device: torch.device
    tokenizer: object
    config: Config
    fingerprint: str  # of the corpus: a resumed run must see the same text
    train_data: object
    val_data: object
    objective: object
    task: PretrainTask
    model: torch.nn.Module
    found: tuple[int, Path] | None  # the checkpoint resumed from
    info: dict | None  # its trainer/state.json
    old_entries: list[Path]  # an earlier run's files, cleared once training starts
    init_from: dict | None = None  # --init-from's source (InitSource.record), kept by every checkpoint


def _objective(o: PretrainOptions, tokenizer, config, train_data):
    """The run's objective, refused where the tokenizer or the data cannot feed it."""
    objective = build_objective(o.objective, tokenizer, o.seq_len, _with_model_languages(o, config))
    if objective.needs_eos and tokenizer.eos_id is None:
        raise PlmlabError(f"the tokenizer has no end-of-text token, which objective {o.objective} puts "
                          "between documents")
    if objective.num_examples(train_data) == 0:
        raise PlmlabError(f"the training split has {train_data.n_tokens} tokens: too few for one "
                          f"sequence of {o.seq_len} (add text or lower --seq-len)")
    return objective


def prepare(options: PretrainOptions, rundir: RunDir, dist: Dist) -> PretrainSetup:
    found = rundir.find_checkpoint() if options.resume else None
    info = read_trainer_info(found[1]) if found else None
    source = None
    o = _resolve(options, info, found, dist)
    check_objective_options(o.objective, o.objective_options)  # before any tokenizer training
    old_entries = [] if found else rundir.refuse_existing(o.overwrite or o.resume)
    torch.set_num_threads(o.threads or default_threads())
    device = dist.device(choose_device(o.device))
    Precision(o.precision, device)  # fp16-mixed on CPU: refused before any work
    status = Status(dist.is_main and o.progress != "none")
    if found:
        documents, languages = _read_corpus(o, status)
        fingerprint = corpus_fingerprint(documents, languages)
        tokenizer, config = _restored(found[1], info, fingerprint, o)
    else:
        _seed_everything(o.seed)
        source, config = _fresh_config(o)
        o = _with_geometry(o, options, config, device, dist.world)
        tokenizer = _given_tokenizer(o, source, config)  # checked before any work
        documents, languages = _read_corpus(o, status)
        fingerprint = corpus_fingerprint(documents, languages)
        tokenizer = tokenizer or make_tokenizer(o, config, documents, status.say)
        config = config.replace(bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id,
                                pad_token_id=tokenizer.pad_id)
    status.done("tokenizer", f"{tokenizer.vocab_size:,} ids, {config.tokenizer} style")
    train_data, val_data = build_token_data(documents, tokenizer, languages=_used_languages(languages, config),
                                            say=status.say)
    status.done("data", f"{train_data.n_tokens:,} training and {val_data.n_tokens:,} validation tokens")
    objective = _objective(o, tokenizer, config, train_data)
    config = _with_language_names(config, list(getattr(objective, "languages", None) or []))
    model = build_model(config, device=device)
    if found:
        model.load_state_dict(load_pretrained(found[1]).state_dict())
    elif source is not None:
        load_source_weights(model, source)  # a new run from another's weights: step 0 = its weights
    status.done("model", f"{model.num_parameters():,} parameters ({config.arch}) on {device}"
                + (threads_text(torch.get_num_threads()) if device.type == "cpu" else ""))
    objective.attach_model(model)  # before the task draws its fixed validation batches
    task = PretrainTask(objective, train_data, val_data, o, dist.world, fingerprint=fingerprint)
    started_from = source.record(o.init_from) if source else (info or {}).get("init_from")
    return PretrainSetup(o, device, tokenizer, config, fingerprint, train_data, val_data, objective, task, model,
                         found, info, old_entries, started_from)


def _read_corpus(o: PretrainOptions, status: Status) -> tuple[list[list[str]], list[str] | None]:
    """(documents, each one's language or None): --corpus, else the built-in corpus."""
    if o.corpus:
        documents, languages = read_corpus_with_languages(o.corpus, errors=o.encoding_errors)
    else:
        documents, languages = builtin_documents(say=status.say), None
    characters = sum(len(s) for doc in documents for s in doc)
    where = ", ".join(o.corpus) if 0 < len(o.corpus) <= 2 else f"{len(o.corpus)} paths" if o.corpus else "built-in"
    status.done("corpus", f"{where}, {len(documents):,} documents, {characters / 1e6:.1f} M characters")
    return documents, languages


def _fresh_config(o: PretrainOptions) -> tuple[InitSource | None, Config]:
    """A new run's --init-from source (or None) and config: the source's, else the preset / config
    file's. Checked (objective fit: clm on T5, GLM on BERT ...) before any work."""
    source = find_source(o.init_from) if o.init_from else None
    config = init_config(o, source) if source else build_config(o)
    check_objective_fits(o.objective, config)
    return source, config


def _given_tokenizer(o: PretrainOptions, source: InitSource | None, config: Config):
    """--init-from's or --tokenizer's tokenizer, checked against the config; None when one is to be
    trained on the corpus."""
    if source is not None:
        return init_tokenizer(o, source, config)
    return make_tokenizer(o, config, []) if o.tokenizer else None


def _used_languages(languages: list[str] | None, config: Config) -> list[str] | None:
    """The documents' languages, kept with their tokens for a model with language embeddings."""
    if languages is not None and not config.n_languages:
        warn("warning: the corpus names languages, but the model has no language embeddings "
             "(n_languages=0): they are not used")
        return None
    return languages


def _with_language_names(config: Config, names: list[str]) -> Config:
    """The objective's language table checked against the model's embeddings and saved in its
    config (XLM's lang2id / id2lang, so `final/` round-trips with the names)."""
    if not config.n_languages:
        return config
    if not names:
        warn(f"warning: the model has {config.n_languages} language embeddings, but the corpus names no "
             'languages: none is used (give JSONL "lang" fields or --corpus-lang NAME=PATH)')
        return config
    if len(names) > config.n_languages:
        raise PlmlabError(f"the corpus has {len(names)} languages ({', '.join(names)}), more than the model's "
                          f"n_languages={config.n_languages} language embeddings; set --n-languages {len(names)}")
    if config.languages:
        return config  # the objective's table is the model's (`_with_model_languages`)
    if len(names) < config.n_languages:
        warn(f"warning: the corpus has {len(names)} of the model's {config.n_languages} languages "
             f"({', '.join(names)}): the saved config names none of them")
        return config
    return config.replace(languages=names)  # checkpoints carry XLM's lang2id


def _with_model_languages(o: PretrainOptions, config) -> dict:
    """The objective's options, with a loaded XLM's language table (its lang2id) unless given."""
    options = dict(o.objective_options)
    if config.languages and "languages" in get_objective(o.objective).Options.names() and "languages" not in options:
        options["languages"] = list(config.languages)
    return options


def _resolve(options: PretrainOptions, info: dict | None, found, dist: Dist) -> PretrainOptions:
    """The frozen options: given, over the checkpoint's (resume) or the defaults."""
    if info is None:
        return options.resolved()
    stored = info.get("options")
    if info.get("format") != STATE_FORMAT or not isinstance(stored, dict):
        raise PlmlabError(f"{found[1]}: trainer state format {info.get('format')!r} is not supported "
                          "(or the state is corrupt)")
    try:
        check_option_types({**DEFAULTS, **stored})
        # A run resumes on any number of ranks: the same global micro-batch (batch_size x world).
        stored = rescale_for_world(stored, int(info.get("world_size", 1)), dist.world)
    except (PlmlabError, TypeError, ValueError, KeyError, AttributeError) as e:
        raise PlmlabError(f"{found[1]}: the trainer state holds invalid options ({e})") from None
    resolved = options.resolved(stored)
    if options.max_steps is not None and options.max_steps != stored.get("max_steps"):
        warn(f"warning: --max-steps {options.max_steps} (the run had {stored.get('max_steps')}) moves the "
             "learning-rate schedule's horizon: the decay from here on follows the new length"
             + (", and so do the stage boundaries of --masking staged"
                if resolved.objective_options.get("masking") == "staged" else ""))
    return resolved


def _restored(folder: Path, info: dict, fingerprint: str, o: PretrainOptions):
    if info.get("corpus_fingerprint") != fingerprint:
        raise PlmlabError(f"the corpus differs from the one this run was trained on "
                          f"({', '.join(o.corpus) or 'the built-in corpus'}); resume needs the same text")
    if not isinstance(info.get("config"), dict):
        raise PlmlabError(f"{folder}: the trainer state is corrupt (no model config)")
    return load_tokenizer(folder), Config.from_dict(info["config"])


def _with_geometry(o: PretrainOptions, given: PretrainOptions, config: Config, device: torch.device,
                   world: int) -> PretrainOptions:
    """seq_len (the model's context, capped per device type) and grad_accum (--global-batch-tokens)."""
    seq_len = o.seq_len
    if seq_len is None:
        seq_len = min(config.max_positions, MAX_DEFAULT_SEQ_LEN.get(device.type, 1024))
    elif seq_len > config.max_positions:
        raise PlmlabError(f"--seq-len {seq_len} is longer than the model's context "
                          f"(max_positions {config.max_positions})")
    grad_accum = o.grad_accum
    if o.global_batch_tokens is not None:
        grad_accum = grad_accum_for(o.global_batch_tokens, o.batch_size, seq_len, world)
        if given.grad_accum is not None and given.grad_accum != grad_accum:
            raise PlmlabError(f"--grad-accum {given.grad_accum} disagrees with --global-batch-tokens "
                              f"{o.global_batch_tokens} (which needs {grad_accum}); pass one of them")
    return dataclasses.replace(o, seq_len=seq_len, grad_accum=grad_accum)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
