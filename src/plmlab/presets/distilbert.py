"""DistilBERT (Sanh et al. 2019, section 3): BERT-base halved in depth, without the
token-type embeddings and the pooler, trained by distillation (`plmlab distill`).

"The token-type embeddings and the pooler are removed while the number of layers is reduced
by a factor of 2"; the student is "initialised from the teacher by taking one layer out of
two" (finetune/distill.py), so each preset halves the depth of the BERT preset of its width:
distilbert-base <- bert-base, distilbert-tiny <- bert-tiny, distilbert-mini <- bert-mini.
"""

from .bert import PRESETS as BERT_PRESETS

# What DistilBERT drops from BERT; a sequence classifier fine-tuned from it has a ReLU pre_classifier
# and a 0.2 seq_classif_dropout (transformers' DistilBertForSequenceClassification).
DISTIL = dict(type_vocab_size=0, pooler=False, pair_head=False, pooler_activation="relu", classifier_dropout=0.2)


def _distil(teacher: str, params: str) -> dict:
    fields = BERT_PRESETS[teacher]
    return {**fields, **DISTIL, "n_layers": fields["n_layers"] // 2, "notes": {"params": params, "teacher": teacher}}


PRESETS = {
    "distilbert-base": _distil("bert-base", "66M"),  # section 3: 66M parameters (HF: 66,985,530 with the MLM head)
    "distilbert-tiny": _distil("bert-tiny", "tiny"),
    "distilbert-mini": _distil("bert-mini", "mini"),
}
