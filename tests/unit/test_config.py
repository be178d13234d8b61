import pytest

from plmlab import Config, PlmlabError
from plmlab.config import parse_overrides


def test_defaults_are_valid_and_derived_fields():
    c = Config(d_model=64, n_heads=4, n_kv_heads=2, d_ff=128)
    assert c.dim_head == 16 and c.kv_heads == 2 and c.embed_dim == 64 and c.rotary_dim == 16


@pytest.mark.parametrize("fields, needle", [
    (dict(d_model=65, n_heads=4), "does not divide d_model"),
    (dict(n_heads=12, n_kv_heads=5), "must divide n_heads"),
    (dict(norm="batchnorm"), "norm='batchnorm'"),
    (dict(position="rotary", rotary_fraction=0.0), "rotary_fraction"),
    (dict(d_model=0), "d_model must be positive"),
    (dict(pair_head=True), "pair_head"),
])
def test_invalid_configs_raise_one_clear_line(fields, needle):
    with pytest.raises(PlmlabError) as e:
        Config(**fields)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_round_trip_and_unknown_fields(tmp_path):
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}
    c = Config(d_model=64, n_heads=4, norm="rmsnorm", rope_scaling=scaling)
    assert Config.from_dict(c.to_dict()) == c
    assert c.norm_bias is False  # RMSNorm has no bias
    with pytest.raises(PlmlabError, match="unknown field"):
        Config.from_dict({"d_modle": 3})


def test_overrides_are_typed():
    out = parse_overrides(["d_model=256", "--tie-embeddings=false", "norm_eps=1e-6", "n_kv_heads=none"])
    assert out == {"d_model": 256, "tie_embeddings": False, "norm_eps": 1e-6, "n_kv_heads": None}
    with pytest.raises(PlmlabError, match="not a int"):
        parse_overrides(["d_model=big"])
    with pytest.raises(PlmlabError, match="expected FIELD=VALUE"):
        parse_overrides(["colour=blue"])
