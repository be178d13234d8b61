"""The experiment framework: statistics, the resumable runner, reports rebuilt from saved runs,
the registry and the CLI's bad input. A fake study (arithmetic, no training) keeps these fast;
tests/e2e/test_experiment_studies_a.py runs the real studies at smoke scale."""

from __future__ import annotations

import json
import math

import pytest

from plmlab.cli import main
from plmlab.errors import PlmlabError
from plmlab.experiments import EXPERIMENTS, Arm, Experiment, PlotSpec, Summary, get_experiment, run_experiment, stats, write_report
from plmlab.experiments.tables import table, values


# ---------------------------------------------------------------- statistics
@pytest.mark.parametrize("t", [-30.0, -2.5, -0.3, 0.0, 0.7, 4.0, 100.0])
def test_t_cdf_matches_closed_forms(t):
    # df = 1 is the Cauchy distribution; df = 2 has a closed form too.
    assert stats.t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-10)
    assert stats.t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-10)


@pytest.mark.parametrize("df, q", [(1, 12.706204736), (2, 4.302652730), (4, 2.776445105), (10, 2.228138852),
                                   (30, 2.042272456), (1000, 1.962339081)])
def test_t_quantile_matches_the_table(df, q):
    assert stats.t_quantile(0.975, df) == pytest.approx(q, abs=1e-7)
    assert stats.t_quantile(0.025, df) == pytest.approx(-q, abs=1e-7)


def test_mean_ci():
    m, h = stats.mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and h == pytest.approx(4.302652730 / math.sqrt(3), abs=1e-7)
    assert stats.mean_ci([5.0]) == (5.0, None)
    assert stats.fmt_ci([1.0, 2.0, 3.0], 2) == "2.00 ± 2.48" and stats.fmt_ci([5.0], 1) == "5.0"
    with pytest.raises(ValueError):
        stats.mean_ci([])


def test_welch_p_matches_a_closed_form():
    # variances 2 and 2, n = 2 each: t = -10 / sqrt(2), Welch's df = 2 exactly
    t = 10 / math.sqrt(2)
    expected = 2 * (1 - (0.5 + t / (2 * math.sqrt(2 + t * t))))
    assert stats.welch_p([0.0, 2.0], [10.0, 12.0]) == pytest.approx(expected, abs=1e-10)
    assert stats.welch_p([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == pytest.approx(1.0)
    assert stats.welch_p([1.0], [2.0, 3.0]) is None
    assert stats.welch_p([1.0, 1.0], [2.0, 2.0]) == 0.0


def test_within_noise_and_compare():
    assert stats.within_noise([1.0, 1.2, 0.9], [1.1, 0.95, 1.05]) is True
    assert stats.within_noise([1.0, 1.01, 0.99], [5.0, 5.01, 4.99]) is False
    assert stats.within_noise([1.0], [2.0]) is None
    assert stats.intervals_overlap([1.0, 1.01, 0.99], [5.0, 5.01, 4.99]) is False
    text = stats.compare("a", [1.0, 1.01, 0.99], "b", [5.0, 5.01, 4.99], "loss")
    assert text.startswith("a beats b on loss by 4.000") and "beyond noise" in text
    assert "within noise" in stats.compare("a", [1.0, 1.2, 0.9], "b", [1.1, 0.95, 1.05], "loss")
    assert "not measured" in stats.compare("a", [1.0], "b", [2.0], "loss", lower_is_better=False)


def test_a_gap_below_the_shown_digits_is_a_tie():
    text = stats.compare("a", [1.0001, 1.0003], "b", [1.0002, 1.0004], "loss")
    assert text.startswith("a and b tie on loss (1.000") and "beats" not in text, text
    assert stats.compare("a", [1.0001], "b", [1.0004], "loss", digits=4).startswith("a beats b on loss by 0.0003")


# ---------------------------------------------------------------- a fake study
CALLS: list[tuple[str, int]] = []


def _run(arm, seed, scale, workdir):
    CALLS.append((arm.name, seed))
    base = arm.params["base"]
    return {"metrics": {"score": base + 0.1 * seed},
            "curves": {"loss": [[step, base + 1.0 / (step + 1) + 0.01 * seed] for step in range(5)]}}


def _summarize(runs):
    columns, rows = table(runs, [("score", "score", 2)])
    verdict = stats.compare("a", values(runs, "a", "score"), "b", values(runs, "b", "score"), "score")
    return Summary(columns, rows, verdict, [PlotSpec("loss.png", "loss", "curve", "loss"),
                                            PlotSpec("score.png", "score", "bar", "score")], {"n": len(runs)})


FAKE = Experiment(name="fake", claim="a beats b", paper="Nobody 2024: a beats b by 1", runtime="instant",
                  arms=lambda scale: [Arm("a", {"base": 1.0}), Arm("b", {"base": 2.0})], run=_run,
                  summarize=_summarize)


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setitem(EXPERIMENTS, "fake", FAKE)
    CALLS.clear()
    return FAKE


def test_run_writes_runs_meta_report_and_plots(fake, tmp_path):
    folder = run_experiment("fake", scale="smoke", seeds=2, out=tmp_path, log=lambda *_: None)
    assert folder == tmp_path / "fake"
    assert sorted(p.name for p in (folder / "runs").iterdir()) == ["a-s0.json", "a-s1.json", "b-s0.json", "b-s1.json"]
    run = json.loads((folder / "runs" / "a-s1.json").read_text())
    assert run["arm"] == "a" and run["seed"] == 1 and run["scale"] == "smoke" and run["params"] == {"base": 1.0}
    meta = json.loads((folder / "meta.json").read_text())
    assert {"plmlab", "torch", "python", "git_commit", "corpus", "wall_s"} <= set(meta)
    assert meta["seeds"] == 2 and meta["corpus"] == {"id": "builtin"}
    report = (folder / "report.md").read_text()
    assert "a beats b" in report and "| a | 1.05 ± 0.64 |" in report and "![loss](loss.png)" in report
    assert "plmlab experiment run fake --scale smoke --seeds 2" in report
    assert (folder / "loss.png").stat().st_size > 1000 and (folder / "score.png").stat().st_size > 1000
    assert not (folder / "work").exists()


def test_a_finished_run_is_not_redone_and_more_seeds_add_runs(fake, tmp_path):
    run_experiment("fake", scale="smoke", seeds=1, out=tmp_path, log=lambda *_: None)
    assert CALLS == [("a", 0), ("b", 0)]
    run_experiment("fake", scale="smoke", seeds=2, out=tmp_path, log=lambda *_: None)
    assert CALLS == [("a", 0), ("b", 0), ("a", 1), ("b", 1)]
    run_experiment("fake", scale="smoke", seeds=2, out=tmp_path, log=lambda *_: None)
    assert len(CALLS) == 4


def test_report_rebuilt_from_saved_runs_is_byte_equal(fake, tmp_path):
    folder = run_experiment("fake", scale="smoke", seeds=3, out=tmp_path, log=lambda *_: None)
    written = {name: (folder / name).read_bytes() for name in ("report.md", "results.json")}
    (folder / "report.md").unlink()
    (folder / "results.json").write_text("stale")
    write_report(folder)
    assert {name: (folder / name).read_bytes() for name in written} == written
    assert json.loads(written["results.json"])["results"] == {"n": 2}


def test_refusals(fake, tmp_path):
    run_experiment("fake", scale="smoke", seeds=1, out=tmp_path, log=lambda *_: None)
    with pytest.raises(PlmlabError, match="--scale smoke, not fake at default"):
        run_experiment("fake", scale="default", out=tmp_path)
    with pytest.raises(PlmlabError, match="unknown experiment 'fak'; did you mean fake"):
        get_experiment("fak")
    with pytest.raises(PlmlabError, match="--seeds must be a positive integer"):
        run_experiment("fake", scale="smoke", seeds=0, out=tmp_path)
    with pytest.raises(PlmlabError, match="unknown scale"):
        run_experiment("fake", scale="huge", out=tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(PlmlabError, match="is a file"):
        run_experiment("fake", scale="smoke", out=tmp_path / "file")
    (tmp_path / "other" / "fake").mkdir(parents=True)
    (tmp_path / "other" / "fake" / "x.txt").write_text("mine")
    with pytest.raises(PlmlabError, match="not an experiment folder"):
        run_experiment("fake", scale="smoke", out=tmp_path / "other")
    with pytest.raises(PlmlabError, match="no meta.json"):
        write_report(tmp_path / "other")


def test_every_registered_study_is_complete():
    assert "norms" in EXPERIMENTS
    for name, e in EXPERIMENTS.items():
        assert e.name == name and e.claim and e.paper and e.runtime
        for scale in ("smoke", "default", "large"):
            arms = e.arms(scale)
            assert arms and len({a.name for a in arms}) == len(arms)
            json.dumps([a.params for a in arms])  # JSON-able


# ---------------------------------------------------------------- CLI
def test_cli_list(capsys):
    assert main(["experiment", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(EXPERIMENTS) and any(line.startswith("norms ") for line in lines)


def test_cli_run_report_and_index(fake, tmp_path, capsys):
    assert main(["experiment", "run", "fake", "--scale", "smoke", "--seeds", "2", "--out", str(tmp_path)]) == 0
    index = tmp_path / "page" / "experiments.md"
    assert main(["experiment", "report", str(tmp_path), "--index", str(index)]) == 0
    page = index.read_text()
    assert page.startswith("# Experiments") and "## fake" in page and "![loss](../fake/loss.png)" in page


@pytest.mark.parametrize("argv, message", [
    (["experiment", "run", "nosuch", "--out", "OUT"], "unknown experiment 'nosuch'"),
    (["experiment", "run", "fake", "--seeds", "0", "--out", "OUT"], "--seeds: must be a positive integer"),
    (["experiment", "run", "fake", "--scale", "smoke", "--out", "FILE"], "is a file, not a folder"),
    (["experiment", "run", "fake", "--scale", "default", "--out", "SMOKE"], "holds a fake run at --scale smoke"),
    (["experiment", "report", "OUT"], "holds no experiment folder"),
])
def test_cli_bad_input_is_one_line_exit_2(fake, tmp_path, capsys, argv, message):
    (tmp_path / "FILE").write_text("x")
    (tmp_path / "OUT").mkdir()
    run_experiment("fake", scale="smoke", seeds=1, out=tmp_path / "SMOKE", log=lambda *_: None)
    capsys.readouterr()
    argv = [str(tmp_path / a) if a in ("OUT", "FILE", "SMOKE") else a for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(main(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("plmlab: error: ") and message in err[0]


def test_an_interrupted_training_run_is_not_recorded(tmp_path, monkeypatch):
    import signal

    from plmlab.experiments import harness
    from plmlab.train.loop import Trainer

    monkeypatch.setattr(Trainer, "fit", lambda self: signal.SIGTERM)
    spec = harness.TrainSpec(preset="gpt-tiny", steps=2, batch_size=2, seq_len=16)
    with pytest.raises(PlmlabError, match="interrupted by SIGTERM at step 0; this run is not saved"):
        harness.train(spec, tmp_path / "work" / "run")


def test_a_study_run_records_the_optimizer_and_schedule_it_ran(tmp_path, monkeypatch):
    """The options a study's run keeps (`trained.setup.options`) are the ones its Trainer used:
    the optimizer's class and every group's hyper-parameters, and the learning rate at every step
    (the study's recipe is not pretraining's default, so a harness that built its own would differ)."""
    import torch

    from plmlab.experiments import harness
    from plmlab.train import DEFAULTS
    from plmlab.train.loop import Trainer
    from plmlab.train.optim import schedule

    seen = {}
    fit = Trainer.fit
    monkeypatch.setattr(Trainer, "fit", lambda self: seen.setdefault("trainer", self) and fit(self))
    spec = harness.TrainSpec(preset="gpt-tiny", steps=6, batch_size=2, seq_len=16, eval_every=0, warmup=2)
    trained = harness.train(spec, tmp_path / "work" / "run")
    o, trainer = trained.setup.options, seen["trainer"]
    assert (o.optimizer, o.schedule) == (harness.STUDY_RECIPE["optimizer"], harness.STUDY_RECIPE["schedule"])
    assert (o.optimizer, o.schedule) != (DEFAULTS["optimizer"], DEFAULTS["schedule"])
    assert type(trainer.optimizer) is torch.optim.AdamW  # the recipe's adamw
    groups = trainer.optimizer.param_groups
    assert {tuple(g["betas"]) for g in groups} == {(o.beta1, o.beta2)}
    assert sorted(g["weight_decay"] for g in groups) == [0.0, o.weight_decay]  # matrices decay, vectors not
    assert (o.lr, o.min_lr, o.warmup, o.max_steps) == (spec.lr, spec.lr / 10, 2, 6)
    recorded = schedule(o.schedule, o.lr, o.warmup, o.max_steps, o.min_lr)  # cosine, from the record alone
    assert [trainer.lr_at(step) for step in range(1, 7)] == [recorded(step) for step in range(1, 7)]
    assert [r["lr"] for r in trainer.log.records] == [recorded(step) for step in range(1, 7)]  # and recorded
    assert (trainer.options.max_steps, trainer.options.clip, trainer.options.save_every) == (6, o.clip, 0)

@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "meta.json").write_text("[1, 2]"), "not a study's meta.json"),
    (lambda f: (f / "meta.json").write_text(json.dumps({"experiment": "fake", "scale": "smoke", "seeds": "2"})),
     "not a study's meta.json"),
    (lambda f: (f / "runs" / "a-s0.json").write_text("[]"), "not the saved run of arm a seed 0"),
    (lambda f: (f / "runs" / "b-s1.json").write_text(json.dumps({"arm": "a", "seed": 1, "metrics": {}})),
     "not the saved run of arm b seed 1"),
    (lambda f: (f / "runs" / "a-s1.json").write_text(json.dumps({"arm": "a", "seed": 1, "metrics": {}})),
     "a saved run lacks what the fake study reads (KeyError"),
])
def test_a_damaged_study_folder_is_one_line(fake, tmp_path, capsys, damage, message):
    folder = run_experiment("fake", scale="smoke", seeds=2, out=tmp_path, log=lambda *_: None)
    damage(folder)
    capsys.readouterr()
    assert main(["experiment", "report", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_two_runs_of_one_study_never_write_together(fake, tmp_path):
    from plmlab.train.rundir import RunLock

    with RunLock(tmp_path / "fake"):
        with pytest.raises(PlmlabError, match="another plmlab process"):
            run_experiment("fake", scale="smoke", seeds=1, out=tmp_path, log=lambda *_: None)
    assert run_experiment("fake", scale="smoke", seeds=1, out=tmp_path, log=lambda *_: None).is_dir()
