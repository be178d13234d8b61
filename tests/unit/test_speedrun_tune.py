"""The bench's arithmetic (no training): bench/tune_recipe.py's seed-noise verdicts and
bench/speedrun.py's interpolated time to the target loss."""

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tune = load("tune_recipe")


def record(arm: str, seed: int, loss: float, preset: str = "gpt-mini", steps: int = 150) -> dict:
    return {"preset": preset, "steps": steps, "arm": arm, "seed": seed, "final_val_loss": loss}


def rows_by_arm(records):
    return {r["arm"]: r for r in tune.summarise(records)}


def test_difference_beyond_both_spreads_is_a_verdict():
    rows = rows_by_arm([record("default", 0, 6.00), record("default", 1, 6.02),
                        record("wsd-1sqrt", 0, 5.90), record("wsd-1sqrt", 1, 5.93),
                        record("muon_lr=0.04", 0, 6.05), record("muon_lr=0.04", 1, 6.06)])
    assert rows["default"]["mean"] == pytest.approx(6.01)
    assert rows["wsd-1sqrt"]["delta"] == pytest.approx(-0.095)
    assert rows["wsd-1sqrt"]["noise"] == pytest.approx(0.03)  # the larger spread: wsd's
    assert tune.verdict(rows["wsd-1sqrt"]) == "better"
    assert tune.verdict(rows["muon_lr=0.04"]) == "worse"


def test_small_difference_is_within_noise_and_one_default_seed_says_unknown():
    rows = rows_by_arm([record("default", 0, 6.00), record("default", 1, 6.04), record("warmup=0", 0, 5.98)])
    assert tune.verdict(rows["warmup=0"]) == "within seed noise"
    one = rows_by_arm([record("default", 0, 6.00), record("warmup=0", 0, 5.50)])
    assert tune.verdict(one["warmup=0"]) == "one seed of default: noise unknown"


def test_rows_compare_within_their_own_preset_and_step_count():
    rows = tune.summarise([record("default", 0, 6.0), record("lr=4e-3", 0, 5.0, preset="llama-mini"),
                           record("default", 0, 4.0, steps=600), record("lr=4e-3", 0, 3.5, steps=600)])
    llama = next(r for r in rows if r["preset"] == "llama-mini")
    assert llama["delta"] is None  # no llama default: nothing to compare with
    long = next(r for r in rows if r["steps"] == 600 and r["arm"] == "lr=4e-3")
    assert long["delta"] == pytest.approx(-0.5)
    assert "| llama-mini | 150 | lr=4e-3 | 1 | 5.0000 |" in tune.table(rows)


def test_every_arm_is_a_valid_set_of_pretrain_options():
    from plmlab.train import PretrainOptions

    for arm in tune.ARMS.values():
        PretrainOptions(out="-", max_steps=150, **arm).resolved()


def test_time_to_target_interpolates_between_evaluations():
    speedrun = load("speedrun")
    evals = [{"val_loss": 7.0, "tokens": 100}, {"val_loss": 6.0, "tokens": 200}, {"val_loss": 5.0, "tokens": 300}]
    assert speedrun.time_to(evals, 5.5, "tokens") == pytest.approx(250.0)
    assert speedrun.time_to(evals, 7.5, "tokens") == 100.0  # reached at the first evaluation
    assert speedrun.time_to(evals, 4.0, "tokens") is None
