"""The BART switches of the encoder-decoder skeleton: what each Config field builds, the
position offset, the scaled embeddings, one-line errors for an invalid config or an over-long
input, and T5's layout left as it was."""

import math

import pytest
import torch

import plmlab
from plmlab.errors import PlmlabError


def test_per_stack_embeddings_share_the_token_table_only():
    model = plmlab.build_model("bart-tiny")
    names = {n for n, _ in model.named_parameters()}
    assert {"embed.tokens.weight", "embed.positions.weight", "embed.norm.weight",
            "decoder_embed.positions.weight", "decoder_embed.norm.weight"} <= names
    assert not any(n.startswith("decoder_embed.tokens") for n in names)
    assert model.embed.positions.weight.shape == (128 + 2, 64)  # BART's offset of 2 rows
    assert model.head.proj.weight is model.embed.tokens.weight and model.head.proj.bias is not None
    t5 = plmlab.build_model("t5-tiny")
    assert not hasattr(t5, "decoder_embed") and not hasattr(t5.embed, "positions")


def test_positions_start_at_the_offset_and_scale_embedding_multiplies_tokens():
    model = plmlab.build_model("bart-tiny", dropout=0.0).eval()
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        model.embed.positions.weight[:2].fill_(1e3)  # rows 0 and 1 are never read
        x = model.embed(ids, torch.arange(3)[None] + 2)
        ref = model.embed.norm(model.embed.tokens(ids) + model.embed.positions.weight[2:5])
        torch.testing.assert_close(x, ref)
        scaled = plmlab.build_model("bart-tiny", scale_embedding=True).eval()
        scaled.embed.positions.weight.zero_()
        y = scaled.embed(ids, torch.arange(3)[None] + 2)
        torch.testing.assert_close(y, scaled.embed.norm(scaled.embed.tokens(ids) * math.sqrt(64)))


def test_bad_config_and_over_long_input_are_one_line():
    with pytest.raises(PlmlabError, match="per_stack_embeddings needs arch=encoder-decoder"):
        plmlab.build_model("gpt-tiny", per_stack_embeddings=True)
    model = plmlab.build_model("bart-tiny").eval()
    with pytest.raises(PlmlabError, match="input of 129 tokens is longer than the model's 128 positions"):
        model(input_ids=torch.ones(1, 129, dtype=torch.long), decoder_input_ids=torch.full((1, 2), 2))
    with pytest.raises(PlmlabError, match="decoder input of 129 tokens"):
        model(input_ids=torch.ones(1, 4, dtype=torch.long), decoder_input_ids=torch.full((1, 129), 2))


def test_labels_are_shifted_right_from_eos():
    model = plmlab.build_model("bart-tiny")
    labels = torch.tensor([[0, 9, 10, -100]])
    assert model.shift_right(labels).tolist() == [[2, 0, 9, 10]]
