"""Chat templates (tokenizers/chat.py): the rendering and the ids equal transformers'
apply_chat_template on the saved directory of every chat-capable tokenizer style; the loss mask
covers assistant content + end-of-turn only; bad input is one line."""

import random

import pytest

from plmlab.errors import PlmlabError
from plmlab.tokenizers import load_tokenizer, train_tokenizer
from plmlab.tokenizers.chat import (chat_template, encode_chat, encode_chat_for_training, read_chat_template,
                                    render_chat, with_chat_template)

transformers = pytest.importorskip("transformers", reason="transformers (test extra) is the oracle")

WORDS = "the model learns language from text and predicts next word user says hello what does it do".split()
CHAT_STYLES = ("gpt2", "llama", "glm", "t5")
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What does str.split do?"},
    {"role": "assistant", "content": "Return a list of the words."},
    {"role": "user", "content": "And  café 你好?"},
]


def corpus(n=200):
    rng = random.Random(0)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) + "." for _ in range(n)]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    out = {}
    for style in CHAT_STYLES:
        tok = with_chat_template(train_tokenizer(corpus(), style, 500 if style == "t5" else 400))
        folder = tmp_path_factory.mktemp(style)
        tok.save(folder)
        out[style] = folder
    return out


@pytest.mark.parametrize("style", CHAT_STYLES)
@pytest.mark.parametrize("gen", [True, False])
def test_rendering_and_ids_equal_transformers(saved, style, gen):
    ours = load_tokenizer(saved[style])
    theirs = transformers.AutoTokenizer.from_pretrained(saved[style])
    assert ours.chat_template == theirs.chat_template  # read back from tokenizer_config.json
    for messages in (MESSAGES, MESSAGES[:3], MESSAGES[1:2]):
        text = render_chat(ours, messages, add_generation_prompt=gen)
        assert text == theirs.apply_chat_template(messages, add_generation_prompt=gen, tokenize=False)
        ids = theirs.apply_chat_template(messages, add_generation_prompt=gen, return_dict=False)
        assert encode_chat(ours, messages, add_generation_prompt=gen) == list(ids)


def test_chat_markers_are_single_special_tokens(saved):
    tok = load_tokenizer(saved["gpt2"])
    ids = encode_chat(tok, MESSAGES[1:2])
    assert ids[0] == tok.token_to_id("<|im_start|>") and tok.token_to_id("<|im_end|>") in ids
    assert "<|im_start|>" in tok.special_ids and tok.encode("<|im_start|>", False) == [tok.special_ids["<|im_start|>"]]
    glm = load_tokenizer(saved["glm"])
    assert render_chat(glm, MESSAGES[1:2]).startswith("[gMASK]<|startofpiece|><|user|>\n")


def test_training_mask_covers_assistant_content_and_end_of_turn(saved):
    tok = load_tokenizer(saved["gpt2"])
    ids, flags = encode_chat_for_training(tok, MESSAGES[:3])
    assert ids == encode_chat(tok, MESSAGES[:3], add_generation_prompt=False)
    learned = tok.decode([i for i, f in zip(ids, flags) if f], skip_special_tokens=False)
    assert learned == "Return a list of the words.<|im_end|>"
    glm = load_tokenizer(saved["glm"])
    ids, flags = encode_chat_for_training(glm, MESSAGES[:3])
    learned = glm.decode([i for i, f in zip(ids, flags) if f], skip_special_tokens=False)
    assert learned.strip() == "Return a list of the words.<|endoftext|>"


def test_chat_template_override_and_bad_input(tmp_path, saved):
    tok = load_tokenizer(saved["llama"])
    path = tmp_path / "t.jinja"
    path.write_text("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}")
    custom = with_chat_template(tok, read_chat_template(path))
    assert render_chat(custom, MESSAGES[1:2]) == "[user] What does str.split do?\n"
    assert chat_template(custom) == path.read_text()
    cases = [
        (MESSAGES[1:2] + [{"role": "robot", "content": "x"}], "unknown role 'robot'"),
        ([{"role": "user"}], "message 0 is not"),
        ("hello", "non-empty list"),
    ]
    for messages, reason in cases:
        with pytest.raises(PlmlabError, match=reason):
            encode_chat(tok, messages)
    with pytest.raises(PlmlabError, match="no assistant turn"):
        encode_chat_for_training(tok, MESSAGES[1:2])
    failing = with_chat_template(tok, "{{ raise_exception('only two turns') }}")
    with pytest.raises(PlmlabError, match="failed to render: only two turns"):
        render_chat(failing, MESSAGES)
    path.write_text("{% for m in messages %}")
    with pytest.raises(PlmlabError, match="not a valid Jinja template"):
        read_chat_template(path)
    bert = train_tokenizer(corpus(), "bert", 300)
    with pytest.raises(PlmlabError, match="no chat template"):
        render_chat(bert, MESSAGES)


@pytest.mark.parametrize("template, reason", [
    ("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
     "did not finish rendering within 2 s"),
    ("{{ messages[0]['content'] | int / 0 }}", "ZeroDivisionError"),
    ("{{ 'x' * 10**10 }}", "repetition to 10,000,000,000 items is too large"),
    ("{{ messages * 10**9 }}", "is too large"),
    ("{% set n = 10**9 %}{{ 9 ** n }}", "exponent 1000000000 is too large"),
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "RecursionError"),
    ("{{ ''.__class__.__mro__ }}", "failed to render"),  # the sandbox: no attributes of Python internals
])
def test_a_template_that_loops_raises_or_explodes_is_one_line(saved, template, reason):
    # the template is untrusted text in a checkpoint: whatever it does ends in one PlmlabError
    tok = with_chat_template(load_tokenizer(saved["llama"]), template)
    with pytest.raises(PlmlabError, match=reason) as caught:
        render_chat(tok, MESSAGES)
    assert "\n" not in str(caught.value)


def test_the_render_deadline_leaves_the_callers_tracer_in_place(saved):
    import sys

    def tracer(frame, event, arg):
        return None

    sys.settrace(tracer)
    try:
        render_chat(load_tokenizer(saved["llama"]), MESSAGES)
        assert sys.gettrace() is tracer
    finally:
        sys.settrace(None)
