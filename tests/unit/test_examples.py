"""examples/: every data file reads with the reader of the command examples/README.md names for
it, has the size that file says, and the folder stays small (it ships in the repository)."""

from __future__ import annotations

from pathlib import Path

import pytest

from plmlab.finetune import get_task
from plmlab.finetune.dpo import read_preferences
from plmlab.finetune.sft_data import read_conversations

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("name, read, count", [
    ("sentiment-train.csv", lambda p: get_task("classification")({}).read(p), 320),
    ("sentiment-dev.csv", lambda p: get_task("classification")({}).read(p), 100),
    ("ner-train.jsonl", lambda p: get_task("token-classification")({}).read(p), 300),
    ("ner-dev.jsonl", lambda p: get_task("token-classification")({}).read(p), 80),
    ("text2text-train.jsonl", lambda p: get_task("text2text")({}).read(p), 320),
    ("text2text-dev.jsonl", lambda p: get_task("text2text")({}).read(p), 100),
    ("chat.jsonl", read_conversations, 44),
    ("chat-dev.jsonl", read_conversations, 8),
    ("prefs.jsonl", read_preferences, 38),
    ("prefs-dev.jsonl", read_preferences, 10),
])
def test_each_file_reads_as_its_command_reads_it(name, read, count):
    records = read(str(EXAMPLES / name))
    assert len(records) == count and name in (EXAMPLES / "README.md").read_text()


def test_the_folder_is_small_and_the_dev_sets_are_held_out():
    assert sum(f.stat().st_size for f in EXAMPLES.iterdir()) < 200_000
    classify = get_task("classification")({})
    train = {r["text"] for r in classify.read(str(EXAMPLES / "sentiment-train.csv"))}
    assert not train & {r["text"] for r in classify.read(str(EXAMPLES / "sentiment-dev.csv"))}
    assert {r["label"] for r in classify.read(str(EXAMPLES / "sentiment-dev.csv"))} == {"positive", "negative"}
