"""Robust figures and outcomes: from known series, and on real tiny runs that learn, collapse, diverge."""

import json
from pathlib import Path

import pytest

from bn_lab import api, config, outcome

SERIES = [(0, 0.10), (500, 0.40), (1000, 0.90), (1500, 0.35), (2000, 0.90), (2500, 0.60)]  # a chaotic curve


def test_late_figures_cover_the_last_tenth_of_training():
    # 2,500 steps: the late window is steps > 2,250, one evaluation; 20,000 steps would be none.
    assert outcome.late_figures(SERIES, 2500) == {"mean": 0.60, "min": 0.60, "max": 0.60, "points": 1, "after_step": 2250}
    # 5,000 steps (the series is its first half): nothing after step 4,500.
    assert outcome.late_figures(SERIES, 5000) is None
    # The lesson's MLP: 50,000 steps, every 500 -> the 10 evaluations after step 45,000.
    lesson = [(step, (step // 500) % 2 * 0.5 + 0.3) for step in range(0, 50001, 500)]
    late = outcome.late_figures(lesson, 50000)
    assert late["points"] == 10 and late["after_step"] == 45000
    assert (late["min"], late["max"]) == (0.3, 0.8) and late["mean"] == pytest.approx(0.55)


def test_best_is_the_earliest_highest_point():
    assert outcome.best_figure(SERIES) == {"accuracy": 0.90, "step": 1000}
    assert outcome.best_figure([]) is None


@pytest.mark.parametrize(
    "diverged, share, expected",
    [(True, None, "diverged"), (False, 1.0, "collapsed"), (False, 0.9, "collapsed"), (False, 0.89, "learned"),
     (False, 0.113, "learned")],
)  # fmt: skip
def test_outcome_rule(diverged, share, expected):
    assert outcome.classify(diverged, share) == expected


def tiny(scale: float) -> dict:
    """The smoke subset at lr 2, 60 steps: relu's plain network dies (good init) or diverges (bad init)."""
    return config.load(
        Path(__file__).parent.parent / "configs" / "smoke.yaml",
        {"optimizer.learning_rate": 2, "init.scale": scale, "train.steps": 60, "train.eval_every": 20,
         "train.jit_compile": False},
    )  # fmt: skip


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("outcomes")
    return {
        init: json.loads((api.run_config(tiny(scale), out=out / init, progress="none") / "summary.json").read_text())
        for init, scale in (("good", 0.05), ("bad", 5.0))
    }


def test_real_runs_learn_collapse_and_diverge(tiny_runs):
    good, bad = tiny_runs["good"]["variants"], tiny_runs["bad"]["variants"]
    # Plain relu at lr 2 from a good init: alive (finite) but predicting one class.
    assert good["without_bn"]["outcome"] == "collapsed" and not good["without_bn"]["diverged"]
    assert good["without_bn"]["top_class_share"] >= 0.9
    assert good["with_bn"]["outcome"] == "learned" and good["with_bn"]["top_class_share"] < 0.3
    # From N(0, 5^2) the plain network's loss is NaN at once: diverged, with the step, no accuracy.
    assert bad["without_bn"]["outcome"] == "diverged" and bad["without_bn"]["diverged_at_step"] >= 1
    assert bad["without_bn"]["late_val_accuracy"] is None and bad["without_bn"]["final_val_accuracy"] is None
    # What the lesson's TF1 code printed for a diverged network: class 0's share of validation.
    from bn_lab import data

    labels = data.load_mnist(val_limit=500).validation.labels
    assert tiny_runs["bad"]["tf1_diverged_val_accuracy"] == pytest.approx((labels == 0).mean())


def test_summary_figures_agree_with_metrics_csv(tiny_runs, tmp_path):
    run = tiny_runs["good"]
    bn = run["variants"]["with_bn"]
    assert bn["late_val_accuracy"]["points"] == 1 and bn["late_val_accuracy"]["after_step"] == 54
    assert bn["late_val_accuracy"]["mean"] == bn["final_val_accuracy"]
    assert bn["best_val_accuracy"]["accuracy"] >= bn["final_val_accuracy"]
    assert set(bn["precise_bn"]) == {"final_val_accuracy", "late_val_accuracy", "best_val_accuracy"}
    assert "precise_bn" not in run["variants"]["without_bn"]


def test_a_diverged_network_reports_no_speed_and_its_partner_a_steady_one(tiny_runs):
    bad = tiny_runs["bad"]["variants"]
    # It diverged in the first chunk, whose time is mostly compilation: no rate, not 0.1 steps/s.
    assert bad["without_bn"]["steps_per_second"] is None
    assert bad["with_bn"]["steps_per_second"] > 50
