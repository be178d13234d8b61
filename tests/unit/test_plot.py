"""`plmlab plot` and plmlab.plotting on synthetic metrics.jsonl files; the TensorBoard logger."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

from plmlab.cli import main
from plmlab.errors import PlmlabError
from plmlab.plotting import ema, metric_series, panels_for, read_metrics, resolve_out
from plmlab.train.tensorboard import TensorBoardLogger

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_run(path, steps=60, eval_every=20, scale=1.0, tail=""):
    """A run directory like plmlab pretrain's: training records plus val_ fields at eval steps."""
    path.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    for step in range(1, steps + 1):
        loss = scale * (5 * math.exp(-step / 20) + 2) + 0.2 * rng.standard_normal()
        record = {"step": step, "loss": loss, "lr": 1e-3 * min(1, step / 10), "tokens": 512 * step,
                  "tokens_per_s": 3000 + 100 * rng.standard_normal(), "grad_norm": 1.5, "epoch": 0}
        if step == 7:  # a skipped non-finite step, as the trainer writes it
            record.update(loss="nan", skipped_step=True)
        lines.append(json.dumps(record))
        if step % eval_every == 0:  # a separate evaluation record (no tokens): interpolated for --x tokens
            lines.append(json.dumps({"step": step, "val_loss": loss + 0.1, "val_ppl": math.exp(loss + 0.1),
                                     "val_mlm_acc": 0.3}))
    (path / "metrics.jsonl").write_text("\n".join(lines) + "\n" + tail, encoding="utf-8")
    return path


def assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    image = pytest.importorskip("matplotlib.image").imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert image.shape[0] > 200 and image.shape[1] > 300
    assert image[..., :3].std() > 0.01  # something was drawn


def error_line(capsys):
    err = capsys.readouterr().err
    assert err.startswith("plmlab: error: ") and err.count("\n") == 1, err
    return err


@pytest.fixture
def runs(tmp_path):
    a = write_run(tmp_path / "run-a")
    b = write_run(tmp_path / "run-b", steps=50, scale=0.8, tail='{"step": 51, "loss": 2.')  # killed mid-write
    return a, b


def test_read_metrics_skips_truncated_last_line(runs):
    records = read_metrics(runs[1])
    assert len(records) == 52 and records[-1]["step"] == 50  # 50 training + 2 evaluation records
    assert [r for r in records if "val_loss" in r][-1].keys() == {"step", "val_loss", "val_ppl", "val_mlm_acc"}
    assert read_metrics(runs[0] / "metrics.jsonl") == read_metrics(runs[0])


def test_metric_series_orders_dedups_and_interpolates_tokens(runs):
    records = read_metrics(runs[0])
    xs, ys = metric_series(records, "loss")
    assert len(xs) == 59 and 7 not in xs  # the "nan" loss of step 7 is left out
    xs, ys = metric_series(records, "val_loss", x="tokens")
    np.testing.assert_allclose(xs, [512 * 20, 512 * 40, 512 * 60])
    xs, ys = metric_series([{"step": 2, "loss": 1.0}, {"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0}], "loss")
    assert xs.tolist() == [1, 2] and ys.tolist() == [3.0, 2.0]


def test_ema_is_debiased_and_smooths():
    assert ema(np.full(5, 4.0), 10) == pytest.approx(np.full(5, 4.0))
    noisy = np.random.default_rng(0).standard_normal(400)
    assert ema(noisy, 20).std() < 0.5 * noisy.std()
    assert ema(noisy, 1).tolist() == noisy.tolist()


def test_panels_and_out(tmp_path):
    assert panels_for(["loss", "val_loss", "lr", "val_ppl"]) == [["loss", "val_loss"], ["lr"], ["val_ppl"]]
    run = tmp_path / "r"
    run.mkdir()
    assert resolve_out(None, [run]) == run / "plots.png"
    assert resolve_out(tmp_path / "figs", [run, run]) == tmp_path / "figs" / "compare.png"
    with pytest.raises(PlmlabError, match="format"):
        resolve_out(tmp_path / "x.jpeg", [run])


def test_a_muon_runs_two_learning_rates_share_a_log_panel(tmp_path):
    """A Muon run records AdamW's `lr` and Muon's `muon_lr` (train/optim.py recorded_lrs): both
    are drawn, in one panel, AdamW solid and Muon dotted, on a log axis."""
    from plmlab.plotting import _draw_panel, panel_grid

    assert panels_for(["loss", "lr", "muon_lr"]) == [["loss"], ["lr", "muon_lr"]]
    assert panels_for(["loss", "muon_lr"]) == [["loss"], ["muon_lr"]]  # alone: its own panel
    records = [{"step": s, "lr": 2e-3 * min(1, s / 5), "muon_lr": 2e-2 * min(1, s / 5)} for s in range(1, 21)]
    fig, axes, colors = panel_grid(1, 1, 4, 3, 1)
    _draw_panel(axes[0], ["lr", "muon_lr"], [records], colors, "step", None, False)
    lines = {line.get_label(): line for line in axes[0].get_lines()}
    assert set(lines) == {"AdamW", "Muon"}
    assert lines["Muon"].get_linestyle() == ":" and lines["AdamW"].get_linestyle() == "-"
    assert lines["Muon"].get_ydata().tolist() == [r["muon_lr"] for r in records]
    assert axes[0].get_yscale() == "log"


def test_the_metrics_record_holds_muons_learning_rate():
    import plmlab
    from plmlab.train.muon import MuonAdamW
    from plmlab.train.optim import make_optimizer, recorded_lrs, set_lr

    muon = MuonAdamW(plmlab.build_model("gpt-tiny"), 2e-3, 0.02, 0.1)
    set_lr(muon, 1e-3)  # the schedule at half its peak
    assert recorded_lrs(muon, 1e-3) == pytest.approx({"lr": 1e-3, "muon_lr": 1e-2})
    assert recorded_lrs(make_optimizer(plmlab.build_model("gpt-tiny"), 2e-3, 0.1), 1e-3) == {"lr": 1e-3}


def test_plot_one_run_default_out(runs, capsys):
    assert main(["plot", str(runs[0])]) == 0
    out = runs[0] / "plots.png"
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    assert_png(out)


def test_plot_compare_two_runs(runs, tmp_path, capsys):
    out = tmp_path / "figs" / "cmp.png"
    code = main(["plot", *map(str, runs), "--out", str(out), "--metrics", "loss,val_loss,val_mlm_acc,grad_norm",
                 "--x", "tokens", "--smooth", "5", "--log-y"])
    assert code == 0, capsys.readouterr().err
    assert_png(out)
    assert not list(out.parent.glob(".*.tmp"))


def test_plot_compare_defaults_to_cwd(runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["plot", *map(str, runs), "--smooth", "0"]) == 0
    assert_png(tmp_path / "compare.png")


@pytest.mark.parametrize("case", ["missing_dir", "missing_file", "empty", "bad_middle", "unknown_metric"])
def test_plot_errors_are_one_line(case, runs, tmp_path, capsys):
    target = runs[0]
    if case == "missing_dir":
        target = tmp_path / "nope"
    elif case == "missing_file":
        target = tmp_path / "no-metrics"
        target.mkdir()
    elif case == "empty":
        (target / "metrics.jsonl").write_text("")
    elif case == "bad_middle":
        lines = (target / "metrics.jsonl").read_text().splitlines()
        lines[3] = lines[3][:10]
        (target / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    args = ["plot", str(target)] + (["--metrics", "loss,bleu"] if case == "unknown_metric" else [])
    assert main(args) == 2
    err = error_line(capsys)
    expected = {"missing_dir": "no such run directory", "missing_file": "not found", "empty": "empty",
                "bad_middle": "metrics.jsonl:4:", "unknown_metric": "'bleu'"}[case]
    assert expected in err
    assert not (runs[0] / "plots.png").exists()


def test_plot_without_matplotlib(runs, monkeypatch, capsys):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert main(["plot", str(runs[0])]) == 2
    assert "pip install plmlab[plot]" in error_line(capsys)


def test_tensorboard_logger_no_op_without_tensorboard(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with TensorBoardLogger(tmp_path / "tb") as tb:
        assert tb.available is False and "pip install tensorboard" in tb.reason
        tb.log({"step": 1, "loss": 2.0}, step=1)
    assert not (tmp_path / "tb").exists()


def test_tensorboard_logger_writes_events(tmp_path):
    pytest.importorskip("tensorboard")
    tb = TensorBoardLogger(tmp_path / "tb")
    assert tb.available
    tb.log({"step": 1, "loss": 2.5, "lr": 1e-3, "skipped_step": True, "val_loss": "nan"}, step=1)
    tb.close()
    tb.log({"loss": 1.0}, step=2)  # after close: ignored
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
