"""`plmlab finetune --task cloze`: GLM classification as blank filling."""

import json

import numpy as np
import pytest
import torch

import plmlab
from plmlab.cli import main
from plmlab.finetune import task_names
from plmlab.finetune.cloze import build_choices, candidate_scores, gold_choice
from plmlab.families.glm import GlmTokens, glm_attention_mask
from plmlab.tokenizers import train_tokenizer

TOK = GlmTokens(mask=1, smask=2, gmask=3, sop=4, eop=5, cls=6, eos=0)
POS, NEG = ["good", "great", "fine", "nice"], ["bad", "awful", "poor", "sad"]
FILL = ["the", "movie", "was", "really", "a", "plot", "and", "actors", "film", "story"]


def sentence(rng, word):
    words = list(rng.choice(FILL, size=6))
    words.insert(int(rng.integers(0, 7)), word)
    return " ".join(words)


def write_sentiment(path, n, seed):
    rng = np.random.default_rng(seed)
    rows = [{"text": sentence(rng, str(rng.choice(POS if i % 2 else NEG))), "label": "pos" if i % 2 else "neg"}
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def glm_dir(tmp_path_factory):
    rng = np.random.default_rng(0)
    texts = [sentence(rng, w) + " It was " + v + "." for w in POS + NEG for v in ("great", "terrible")
             for _ in range(3)]
    tok = train_tokenizer(texts, "glm", vocab_size=300, min_frequency=1)
    torch.manual_seed(0)
    model = plmlab.build_model("glm-tiny", vocab_size=tok.vocab_size)
    path = tmp_path_factory.mktemp("glm")
    plmlab.save_pretrained(model, path, tokenizer=tok)
    return path


def test_layout_of_the_candidates():
    ex = build_choices([6, 11, 1, 12, 0], 2, [[21], [22, 23]], 1, TOK)
    #                          A: [CLS] x [M] y eos | sop 21 | sop 22 23
    assert ex["input_ids"].tolist() == [6, 11, 1, 12, 0, 4, 21, 4, 22, 23]
    assert ex["labels"].tolist() == [-100] * 7 + [22, 23, -100]  # the gold (second) candidate only
    assert ex["position_ids"].tolist() == [[0, 1, 2, 3, 4, 2, 2, 2, 2, 2], [0, 0, 0, 0, 0, 1, 2, 1, 2, 3]]
    mask = ex["attention_mask"]
    assert mask[:5, :5].all() and not mask[:5, 5:].any()  # Part A: itself only
    assert mask[6].tolist() == [1] * 5 + [1, 1, 0, 0, 0]  # candidate 1 never sees candidate 2
    assert mask[9].tolist() == [1] * 5 + [0, 0, 1, 1, 1]


def test_scores_equal_separate_blank_filling_runs():
    """One pass over all candidates scores each exactly as its own Part A + Part B run would."""
    torch.manual_seed(0)
    model = plmlab.build_model("glm-tiny", init_std=0.3).eval()
    part_a, m = [6, 100, 1, 200, 0], 2
    choices = [[300], [400, 500], [600, 700, 800]]
    ex = build_choices(part_a, m, choices, 2, TOK)
    batch = {k: torch.as_tensor(v)[None] for k, v in ex.items()}
    with torch.no_grad():
        scores = candidate_scores(model(**batch).logits, batch)[0]
        for c, words in enumerate(choices):
            ids = torch.tensor([part_a + [TOK.sop] + words])
            n_a, n_b = len(part_a), len(words) + 1
            pos = torch.tensor([[list(range(n_a)) + [m] * n_b, [0] * n_a + list(range(1, n_b + 1))]])
            mask = torch.from_numpy(glm_attention_mask(n_a, n_a + n_b).astype(np.int64))[None]
            logp = model(ids, position_ids=pos, attention_mask=mask).logits[0].log_softmax(-1)
            alone = sum(float(logp[n_a + k, w]) for k, w in enumerate(words))
            assert abs(float(scores[c]) - alone) < 1e-4
    assert int(gold_choice(batch)[0]) == 2


def test_cloze_finetuning_learns_sentiment(glm_dir, tmp_path, capsys):
    assert "cloze" in task_names()
    train, dev = write_sentiment(tmp_path / "train.jsonl", 96, 1), write_sentiment(tmp_path / "dev.jsonl", 40, 2)
    args = ["finetune", "--model", str(glm_dir), "--task", "cloze", "--train", str(train), "--eval", str(dev),
            "--out", str(tmp_path / "run"), "--epochs", "20", "--batch-size", "16", "--lr", "2e-3",
            "--verbalizer", "pos:great,neg:terrible", "--json"]
    assert main(args) == 0
    history = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # from a random init (no pretraining), so 20 short epochs; chance would give 0.5 (P(>= 0.8) ~ 1e-4)
    assert history[-1]["eval_accuracy"] >= 0.8 and history[-1]["train_loss"] < history[0]["train_loss"] / 10
    tuned = plmlab.load_pretrained(tmp_path / "run" / "final")  # still a GLM with its LM head
    assert tuned.config.position == "learned-2d" and tuned.head is not None
    # The paper's loss normalises over the candidates only, so it teaches which verbalizer wins,
    # not that it beats the whole vocabulary: fill-blanks still runs, its words are free.
    assert main(["fill-blanks", "--model", str(tmp_path / "run" / "final"), "the movie was good . It was [MASK].",
                 "--max-new-tokens", "3"]) == 0
    assert capsys.readouterr().out.startswith("the movie was good")


def test_cloze_errors(glm_dir, tmp_path, capsys):
    train = write_sentiment(tmp_path / "train.jsonl", 8, 1)
    base = ["finetune", "--model", str(glm_dir), "--task", "cloze", "--train", str(train),
            "--out", str(tmp_path / "run"), "--epochs", "1"]
    assert main(base + ["--verbalizer", "pos:great"]) == 2
    assert "no word for label(s) neg" in capsys.readouterr().err
    assert main(base + ["--cloze-pattern", "{text} no blank here"]) == 2
    assert "exactly one [MASK]" in capsys.readouterr().err
    bert_like = tmp_path / "g4"
    plmlab.save_pretrained(plmlab.build_model("glm4-tiny"), bert_like,
                           tokenizer=plmlab.tokenizers.load_tokenizer(glm_dir))
    assert main(["finetune", "--model", str(bert_like), "--task", "cloze", "--train", str(train),
                 "--out", str(tmp_path / "run2")]) == 2
    assert "needs a GLM blank-infilling model" in capsys.readouterr().err


def test_eval_loss_is_the_training_loss():
    """Evaluation reports the candidate-normalised loss the training minimises, not the LM's."""
    from plmlab.finetune.cloze import Cloze

    torch.manual_seed(0)
    model = plmlab.build_model("glm-tiny", init_std=0.3).eval()
    examples = [build_choices([6, 100, 1, 200, 0], 2, [[300], [400, 500]], gold, TOK) for gold in (0, 1)]
    batch = {k: torch.as_tensor(np.stack([e[k] for e in examples])) for k in examples[0]}
    task = Cloze({})
    task.labels, task.index = ["a", "b"], {"a": 0, "b": 1}
    with torch.no_grad():
        train_loss, output = task.forward(model, batch)
        scores = task.score(model, [batch])
    assert scores["loss"] == pytest.approx(float(train_loss), abs=1e-6)
    assert abs(scores["loss"] - float(output.loss)) > 1e-3  # the full-vocabulary LM loss differs
    assert task.count_targets(batch) == 2  # a mean over examples: accumulation weighs them so
