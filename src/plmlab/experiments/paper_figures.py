"""Every figure a study quotes from a paper, checked against the paper's text, in one table.

A study never types a paper's number: its `paper` text and its verdict take them from here,
    from ..paper_figures import cite, v
    paper = cite("bert-t8/80-10-10/mnli", "bert-t8/80-20-0/mnli")   # paper, table, model, tokens, values
    f"... MNLI {v('bert-t8/80-20-0/mnli')} ..."                       # one value, as the paper prints it
so the text cannot drift from the table, and tests/unit/test_paper_figures.py checks that every number
in a study's text is one of its figures. `rows()` is the table as plain tuples (key, study,
paper, where, row, metric, value, model, training, checked, note); an unknown key is a KeyError
when the study module is imported.

Each Source records what the paper trained (model size, steps or tokens) and where the figures were
checked: the paper's own text (arXiv or conference version) as reproduced in stored copies --
text extractions and faithful tables in public repositories. A figure's `arm` names the study
arm it corresponds to (None: context, e.g. another model size); its `note` says what the row is
not (a different setting from ours, an inconsistency in the paper, what could not be verified).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    paper: str  # "Devlin et al. 2019 (BERT)"
    where: str  # "Table 8 (appendix C.2)"
    model: str  # the paper's model and size for these figures
    training: str  # its pre-training: steps, batch, tokens, data
    checked: str  # what the figures were checked against


@dataclass(frozen=True)
class Figure:
    study: str  # the plmlab experiment that quotes it
    source: Source
    row: str  # the paper's row, in words ("80 % [MASK] / 20 % unchanged")
    metric: str
    value: str  # exactly as the paper prints it: "84.4", "1.7x", "18M"
    arm: str | None = None  # the study arm this row corresponds to
    note: str = ""


BERT_T8 = Source(
    "Devlin et al. 2019 (BERT)", "Table 8 (appendix C.2; columns MASK / SAME / RND)",
    model="BERT (appendix C.2 does not state the size; the paper's other ablations use BERT-base, 110M parameters)",
    training="BERT's pre-training, 1M steps of 256 x 512 = 128,000 tokens (about 40 epochs of BookCorpus + "
             "Wikipedia)",
    checked="arXiv 1810.04805 appendix C.2, Table 8, in several stored text extractions")
ROBERTA_T1 = Source(
    "Liu et al. 2019 (RoBERTa)", "Table 1 (section 4.1)",
    model="BERT-base configuration, 110M parameters",
    training="BookCorpus + Wikipedia (16GB); the table gives no step count (section 4's other runs: 1M steps "
             "of 256 sequences); static = BERT's 10 masks over 40 epochs",
    checked="arXiv 1907.11692 section 4.1 and Table 1 (medians over 5 seeds)")
ROBERTA_T2 = Source(
    "Liu et al. 2019 (RoBERTa)", "Table 2 (section 4.2)",
    model="BERT-base configuration, 110M parameters",
    training="1M steps of 256 sequences of up to 512 tokens (at most 131B tokens), BookCorpus + Wikipedia",
    checked="arXiv 1907.11692 Table 2 and its caption (medians over 5 seeds)")
ROBERTA_T3 = Source(
    "Liu et al. 2019 (RoBERTa)", "Table 3 (section 4.3)",
    model="BERT-base configuration, 110M parameters",
    training="equal passes over BookCorpus + Wikipedia: 256 x 1M = 2K x 125K = 8K x 31K sequences of up to "
             "512 tokens (at most 131B tokens)",
    checked="arXiv 1907.11692 Table 3 and its caption (learning rate tuned per batch size)")
ROBERTA_S44 = Source(
    "Liu et al. 2019 (RoBERTa)", "section 4.4 (Text Encoding)",
    model="BERT-base and BERT-large with BERT's 30K character-level BPE or a 50K byte-level BPE",
    training="'early experiments' (the section gives no schedule and no per-task numbers)",
    checked="arXiv 1907.11692 section 4.4, in several stored text extractions")
# every ALBERT table (section 4.1)
ALBERT_RUN = "125k steps of 4096 sequences of up to 512 tokens (at most 262B tokens), BookCorpus + Wikipedia"
ALBERT_T2 = Source(
    "Lan et al. 2020 (ALBERT)", "Table 2 (section 4.3)",
    model="BERT-large (24 layers, H = 1024) and ALBERT-large (24 layers, H = 1024, E = 128, all layers shared)",
    training=ALBERT_RUN,
    checked="arXiv 1909.11942 Table 2 and section 4.3, in a stored text extraction of the ICLR 2020 paper")
ALBERT_T34 = Source(
    "Lan et al. 2020 (ALBERT)", "Tables 3 and 4 (sections 4.4 and 4.5)",
    model="ALBERT-base configuration (12 layers, H = 768) with embedding size E and sharing switched",
    training=ALBERT_RUN,
    checked="arXiv 1909.11942 Tables 3 and 4, in a stored text extraction of the ICLR 2020 paper")
ALBERT_T5 = Source(
    "Lan et al. 2020 (ALBERT)", "Table 5 (section 4.6)",
    model="ALBERT-base configuration (12M parameters)",
    training=ALBERT_RUN,
    checked="arXiv 1909.11942 Table 5 and section 4.6, in a stored text extraction of the ICLR 2020 paper")
T5 = Source(
    "Raffel et al. 2020 (T5)", "Tables 2 and 4 (sections 3.2 and 3.3)",
    model="encoder-decoder with BERT-base-sized stacks (12 + 12 layers, about 220M parameters); the "
          "decoder-only rows have one 12-layer stack",
    training="2^19 = 524,288 steps of about 65,536 tokens (2^35, about 34B tokens) of C4",
    checked="arXiv 1910.10683 Tables 2, 4 and 5 and section 3.1.2, in a stored text of the paper")
SHAZEER_T1 = Source(
    "Shazeer 2020 (GLU Variants Improve Transformer)", "Table 1 (section 3.2)",
    model="T5-base-sized encoder-decoder (12 + 12 layers, d_model 768, d_ff 3072; 2048 in the gated MLPs "
          "so parameters and compute match)",
    training="524,288 steps of 128 sequences of 512 input tokens (about 34B input tokens) of C4, span "
             "filling; the 65,536-step column is the mean of 4 shorter runs",
    checked="arXiv 2002.05202 Table 1, reproduced identically in several stored notes and READMEs")
RMSNORM = Source(
    "Zhang & Sennrich 2019 (RMSNorm, NeurIPS)", "abstract (Tables 2-10)",
    model="their RNN and Transformer models on several tasks (each table its own)",
    training="each task's own schedule (the abstract gives none)",
    checked="arXiv 1910.07467 abstract, quoted in several stored copies")
DEEPNET = Source(
    "Wang et al. 2022 (DeepNet)", "abstract",
    model="Post-LN Transformers with DeepNorm up to 1,000 layers (a 200-layer model has 3.2B parameters)",
    training="machine translation; the abstract gives no schedule",
    checked="arXiv 2203.00555 abstract, in several stored copies")
GPT3 = Source(
    "Brown et al. 2020 (GPT-3)", "Figure 1.2 and Table 2.1",
    model="8 decoder sizes, 125M to 175B parameters (Figure 1.2 plots 1.3B, 13B and 175B)",
    training="300B tokens each",
    checked="arXiv 2005.14165 Figure 1.2 caption and the model table, in stored copies")
GQA = Source(
    "Ainslie et al. 2023 (GQA, EMNLP)", "Table 1",
    model="T5.1.1 XXL (MHA, and MQA / GQA-8 converted from it) and T5 Large",
    training="uptrained for 5 % of the original pre-training steps (the paper gives no token count)",
    checked="arXiv 2305.13245 Table 1, reproduced identically in several stored notes")

FIGURES: dict[str, Figure] = {
    # masking: Table 8's rows in its own column order MASK / SAME / RND; our arms name [MASK] / random / unchanged
    "bert-t8/80-10-10/mnli": Figure("masking", BERT_T8, "BERT's 80/10/10", "MNLI dev accuracy, fine-tuned",
                                    "84.2", arm="80-10-10"),
    "bert-t8/100-0-0/mnli": Figure("masking", BERT_T8, "100 % [MASK]", "MNLI dev accuracy, fine-tuned", "84.3",
                                   arm="100-mask"),
    "bert-t8/80-20-0/mnli": Figure("masking", BERT_T8, "80 % [MASK] + 20 % unchanged",
                                   "MNLI dev accuracy, fine-tuned", "84.4", arm="80-0-20",
                                   note="MASK 80, SAME 20, RND 0; the row above it in the paper (84.1) is 80 % "
                                        "[MASK] / 20 % random, not this arm"),
    "bert-t8/80-10-10/ner-feat": Figure("masking", BERT_T8, "BERT's 80/10/10",
                                        "CoNLL-2003 NER dev F1, feature-based", "94.9", arm="80-10-10"),
    "bert-t8/100-0-0/ner-feat": Figure("masking", BERT_T8, "100 % [MASK]", "CoNLL-2003 NER dev F1, feature-based",
                                       "94.0", arm="100-mask"),
    "bert-t8/80-20-0/ner-feat": Figure("masking", BERT_T8, "80 % [MASK] + 20 % unchanged",
                                       "CoNLL-2003 NER dev F1, feature-based", "94.7", arm="80-0-20"),
    "roberta-t1/static/mnli": Figure("masking", ROBERTA_T1, "static, 10 masks", "MNLI-m dev accuracy", "84.3",
                                     arm="static-10"),
    "roberta-t1/dynamic/mnli": Figure("masking", ROBERTA_T1, "dynamic", "MNLI-m dev accuracy", "84.0",
                                      arm="80-10-10"),
    "roberta-t1/static/squad2": Figure("masking", ROBERTA_T1, "static, 10 masks", "SQuAD 2.0 dev F1", "78.3",
                                       arm="static-10"),
    "roberta-t1/dynamic/squad2": Figure("masking", ROBERTA_T1, "dynamic", "SQuAD 2.0 dev F1", "78.7", arm="80-10-10"),
    # roberta-formats
    **{f"roberta-t2/{fmt}/{metric}": Figure("roberta-formats", ROBERTA_T2, fmt.upper(), label, value, arm=fmt)
       for fmt, values in {"segment-pair+nsp": ("84.0", "78.7", "92.9", "64.2"),
                           "sentence-pair+nsp": ("82.9", "76.2", "92.1", "63.0"),
                           "full-sentences": ("84.7", "79.1", "92.5", "64.8"),
                           "doc-sentences": ("84.7", "79.7", "92.7", "65.6")}.items()
       for (metric, label), value in zip((("mnli", "MNLI-m dev accuracy"), ("squad2", "SQuAD 2.0 dev F1"),
                                          ("sst2", "SST-2 dev accuracy"), ("race", "RACE accuracy")), values)},
    # nsp-vs-sop
    **{f"albert-t5/{trained}/on-{task}": Figure("nsp-vs-sop", ALBERT_T5, f"trained with {label}",
                                                f"intrinsic accuracy on {task.upper()} pairs", value,
                                                arm=None if trained == "none" else trained)
       for trained, label, scores in (("nsp", "NSP", ("90.5", "52.0")), ("sop", "SOP", ("78.9", "86.5")),
                                      ("none", "neither", ("52.4", "53.3")))
       for task, value in zip(("nsp", "sop"), scores)},
    # albert: the equal-width pair of Table 2, and the ablations of Tables 3 and 4 in ALBERT-base
    "albert-t2/bert-large/params": Figure("albert", ALBERT_T2, "BERT-large", "parameters", "334M", arm="bert"),
    "albert-t2/albert-large/params": Figure("albert", ALBERT_T2, "ALBERT-large", "parameters", "18M", arm="albert"),
    "albert-t2/bert-large/speed": Figure("albert", ALBERT_T2, "BERT-large", "training data throughput vs BERT-large",
                                         "1.0", arm="bert"),
    "albert-t2/albert-large/speed": Figure("albert", ALBERT_T2, "ALBERT-large",
                                           "training data throughput vs BERT-large", "1.7x", arm="albert",
                                           note="same TPUs; the paper credits 'less communication and fewer "
                                                "computations'"),
    "albert-t2/albert-xxlarge/speed": Figure("albert", ALBERT_T2, "ALBERT-xxlarge, 235M, H = 4096",
                                             "training data throughput vs BERT-large", "0.3x",
                                             note="wider than BERT-large, so not an equal-width comparison"),
    "albert-t2/bert-large/avg": Figure("albert", ALBERT_T2, "BERT-large",
                                       "dev average of SQuAD 1.1/2.0, MNLI, SST-2, RACE", "85.2", arm="bert"),
    "albert-t2/albert-large/avg": Figure("albert", ALBERT_T2, "ALBERT-large",
                                         "dev average of SQuAD 1.1/2.0, MNLI, SST-2, RACE", "82.4", arm="albert"),
    "albert-t4/not-shared-768/avg": Figure("albert", ALBERT_T34, "not shared, E = 768, 108M",
                                           "dev average of SQuAD 1.1/2.0, MNLI, SST-2, RACE", "82.3", arm="bert"),
    "albert-t3/not-shared-128/avg": Figure("albert", ALBERT_T34, "not shared, E = 128, 89M",
                                           "dev average of SQuAD 1.1/2.0, MNLI, SST-2, RACE", "81.7",
                                           arm="factorised",
                                           note="Table 3's value; Table 4 lists 81.6 for the same configuration"),
    "albert-t4/all-shared-768/avg": Figure("albert", ALBERT_T34, "all shared, E = 768, 31M",
                                           "dev average of SQuAD 1.1/2.0, MNLI, SST-2, RACE", "79.8", arm="shared"),
    "albert-t4/all-shared-128/avg": Figure("albert", ALBERT_T34, "all shared, E = 128, 12M",
                                           "dev average of SQuAD 1.1/2.0, MNLI, SST-2, RACE", "80.1", arm="albert"),
    # objectives: T5's GLUE averages; its "BERT-style" is a denoising objective in an encoder-decoder
    "t5-t2/enc-dec-denoising/glue": Figure("objectives", T5, "Table 2: encoder-decoder, span corruption",
                                           "GLUE average (dev)", "83.28", arm="span-corruption",
                                           note="the same run is Table 5's 'replace corrupted spans'"),
    "t5-t2/decoder-lm/glue": Figure("objectives", T5, "Table 2: decoder-only, causal LM",
                                    "GLUE average (dev)", "73.78", arm="clm",
                                    note="same compute as the encoder-decoder, half its parameters"),
    "t5-t4/bert-style/glue": Figure("objectives", T5, "Table 4: BERT-style denoising", "GLUE average (dev)", "82.96",
                                    arm="mlm", note="15 % corrupted, reconstructed by an encoder-decoder; not an "
                                                    "encoder-only BERT"),
    "t5-t4/prefix-lm/glue": Figure("objectives", T5, "Table 4: prefix LM", "GLUE average (dev)",
                                   "80.69"),
    # batch-size: RoBERTa's batches do not map onto ours (4-64 sequences), so no arm
    **{f"roberta-t3/bsz-{bsz}/{metric}": Figure("batch-size", ROBERTA_T3, f"batch {bsz}, {steps} steps, lr {lr}",
                                                label, value)
       for bsz, steps, lr, ppl, mnli in (("256", "1M", "1e-4", "3.99", "84.7"), ("2K", "125K", "7e-4", "3.68", "85.2"),
                                         ("8K", "31K", "1e-3", "3.77", "84.6"))
       for metric, label, value in (("ppl", "MLM perplexity on held-out training data", ppl),
                                    ("mnli", "MNLI-m dev accuracy", mnli))},
    # activations: both columns of Table 1 -- the ordering of ReLU and GELU flips with training length
    **{f"shazeer-t1/{arm}/{steps}": Figure("activations", SHAZEER_T1, f"FFN_{name}",
                                           f"held-out log-perplexity after {steps} steps (lower is better)", value,
                                           arm=arm)
       for arm, name, short, full in (("relu", "ReLU", "1.997", "1.677"), ("gelu", "GELU", "1.983", "1.679"),
                                      ("swiglu", "SwiGLU", "1.944", "1.636"))
       for steps, value in (("65,536", short), ("524,288", full))},
    "rmsnorm/running-time": Figure("norms", RMSNORM, "RMSNorm against LayerNorm", "running time saved", "7%-64%",
                                   arm="rmsnorm",
                                   note="a stored review of Tables 2-10 puts RMSNorm's own savings at 6.9-40.8 % "
                                        "and the 64 % at partial RMSNorm (Table 8); not checked against the "
                                        "paper's tables here"),
    "deepnet/depth": Figure("norm-placement", DEEPNET, "DeepNorm", "deepest model trained stably", "1,000 layers"),
    "gpt3/sizes/smallest": Figure("icl", GPT3, "GPT-3 Small", "parameters", "125M",
                                  note="Figure 1.2's task is removing random symbols from a word; the paper "
                                       "reports few-shot gains growing with size across its tasks"),
    "gpt3/sizes/largest": Figure("icl", GPT3, "GPT-3 175B", "parameters", "175B"),
    **{f"gqa-t1/{name.lower()}/{metric}": Figure("attention-sharing", GQA, name, label, value, arm=arm)
       for name, arm, seconds, average in (("MHA-XXL", "mha", "1.51", "47.2"), ("MQA-XXL", "mqa", "0.24", "46.6"),
                                           ("GQA-8-XXL", None, "0.28", "47.1"))
       for metric, label, value in (("time", "inference time per sample, seconds", seconds),
                                    ("average", "average over summarization, translation and QA", average))},
    "roberta-s44/params-base": Figure("vocab", ROBERTA_S44, "50K byte-level BPE instead of 30K, BERT-base",
                                      "parameters added", "15M"),
    "roberta-s44/params-large": Figure("vocab", ROBERTA_S44, "50K byte-level BPE instead of 30K, BERT-large",
                                       "parameters added", "20M"),
    "roberta-s44/end-task": Figure("vocab", ROBERTA_S44, "50K byte-level BPE against BERT's 30K",
                                   "end-task performance", "slightly worse on some tasks",
                                   note="the paper gives no numbers; RoBERTa kept the 50K BPE for universality "
                                        "(no unknown tokens), not for quality"),
}


def v(key: str) -> str:
    """One figure's value as the paper prints it."""
    return FIGURES[key].value


def cite(*keys: str) -> str:
    """The figures as a citation: per source, the paper, where, model and training, then per metric
    "value (row)". Consecutive keys of one source share its header."""
    parts: list[str] = []
    for source, group in _runs([FIGURES[k] for k in keys], lambda f: f.source):
        metrics = "; ".join(f"{metric}: " + ", ".join(f"{f.value} ({f.row})" for f in figures)
                            for metric, figures in _runs(group, lambda f: f.metric))
        parts.append(f"{source.paper}, {source.where} -- {source.model}; {source.training} -- {metrics}")
    return ". ".join(parts)


def rows() -> list[tuple[str, ...]]:
    """The table: (key, study, paper, where, row, metric, value, model, training, checked, note)."""
    return [(key, f.study, f.source.paper, f.source.where, f.row, f.metric, f.value, f.source.model,
             f.source.training, f.source.checked, f.note) for key, f in FIGURES.items()]


def _runs(figures: list[Figure], by) -> list[tuple[object, list[Figure]]]:
    """Consecutive figures grouped by `by(figure)`, in the order given."""
    out: list[tuple[object, list[Figure]]] = []
    for f in figures:
        if out and out[-1][0] == by(f):
            out[-1][1].append(f)
        else:
            out.append((by(f), [f]))
    return out
