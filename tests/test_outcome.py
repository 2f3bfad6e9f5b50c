"""Robust figures and outcomes: from known series, and on real tiny runs that learn, collapse, diverge."""

import csv
import json
import math
from pathlib import Path

import pytest

from bn_lab import api
from bn_lab.config import loading as config
from bn_lab.report import outcome
from bn_lab.training import launch

SERIES = [(0, 0.10), (500, 0.40), (1000, 0.90), (1500, 0.35), (2000, 0.90), (2500, 0.60)]  # a chaotic curve


def test_late_figures_cover_the_last_tenth_of_training():
    # 2,500 steps: the late window is steps > 2,250, one evaluation; 20,000 steps would be none.
    assert outcome.late_figures(SERIES, 2500) == {
        "mean": 0.60,
        "min": 0.60,
        "max": 0.60,
        "points": 1,
        "after_step": 2250,
    }
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
    "diverged, share, accuracy, expected",
    [
        (True, None, None, "diverged"),
        (False, 0.2, None, "diverged"),  # finite loss, but the last update left logits that are not numbers
        (False, 1.0, 0.1126, "collapsed"),
        (False, 0.9, 0.2, "collapsed"),
        (False, 0.89, 0.5, "learned"),
        (False, 0.113, 0.97, "learned"),
        (False, 0.3, 0.2125, "near chance"),  # chance 0.1126 (class 1's share) + 0.1
        (False, 0.3, 0.2126, "learned"),
    ],
)
def test_outcome_rule(diverged, share, accuracy, expected):
    assert outcome.classify(diverged, share, accuracy, chance=0.1126) == expected


def tiny(scale: float) -> dict:
    """The smoke subset at lr 2, 60 steps: relu's plain network dies (good init) or diverges (bad init)."""
    return config.load(
        Path(__file__).parent.parent / "configs" / "smoke.yaml",
        {
            "optimizer.learning_rate": 2,
            "init.scale": scale,
            "train.steps": 60,
            "train.eval_every": 20,
            "train.jit_compile": False,
        },
    )


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """{init: summary.json} of two real runs, with each run's directory under "dir" and its drawn
    accuracy figure under "figure" (files.save_figure is watched, the PNG is still written)."""
    from bn_lab.disk import files

    out, runs, drawn = tmp_path_factory.mktemp("outcomes"), {}, {}
    save = files.save_figure

    def watched(path, figure, **options):
        drawn[Path(path).name] = figure  # drawn in the run's staging directory, before it moves into place
        save(path, figure, **options)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(files, "save_figure", watched)
        for init, scale in (("good", 0.05), ("bad", 5.0)):
            run_dir = launch.run_config(tiny(scale), out=out / init, progress="none")
            runs[init] = json.loads((run_dir / "summary.json").read_text())
            runs[init]["dir"], runs[init]["figure"] = run_dir, drawn.pop("accuracy.png")
    return runs


def metrics_rows(run_dir: Path, variant: str, split: str) -> list[tuple[int, float, float]]:
    """(step, accuracy, top class share) of one network's rows of one split, read with csv alone."""
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if (r["variant"], r["split"]) == (variant, split)]
    return [(int(r["step"]), float(r["accuracy"]), float(r["top_class_share"])) for r in rows]


@pytest.mark.slow
def test_real_runs_learn_collapse_and_diverge(tiny_runs):
    good, bad = tiny_runs["good"]["variants"], tiny_runs["bad"]["variants"]
    # Plain relu at lr 2 from a good init dies on every CPU measured: alive (finite) but predicting one class.
    assert good["without_bn"]["outcome"] == "collapsed" and not good["without_bn"]["diverged"]
    assert good["with_bn"]["outcome"] == "learned"
    for init in ("good", "bad"):  # each outcome is the rule applied to the network's last validation row
        run = tiny_runs[init]
        for variant, v in run["variants"].items():
            last = metrics_rows(run["dir"], variant, "validation")[-1]
            if not v["diverged"]:
                assert last[0] == 60 and v["top_class_share"] == last[2], (init, variant)
            chance = run["chance_val_accuracy"]
            assert v["outcome"] == outcome.classify(
                v["diverged"], v["top_class_share"], v["final_val_accuracy"], chance
            )
    # From N(0, 5^2) the plain network's loss is NaN at once: diverged, with the step, no accuracy.
    assert bad["without_bn"]["outcome"] == "diverged" and bad["without_bn"]["diverged_at_step"] >= 1
    assert bad["without_bn"]["late_val_accuracy"] is None and bad["without_bn"]["final_val_accuracy"] is None
    # What the lesson's TF1 code printed for a diverged network: class 0's share of validation.
    from bn_lab.data import mnist as data

    labels = data.load_mnist(val_limit=500).validation.labels
    assert tiny_runs["bad"]["tf1_diverged_val_accuracy"] == pytest.approx((labels == 0).mean())
    # Chance, what "near chance" is measured from: always answering the commonest validation class.
    assert tiny_runs["bad"]["chance_val_accuracy"] == pytest.approx(max((labels == c).mean() for c in range(10)))


@pytest.mark.slow
def test_summary_figures_agree_with_metrics_csv(tiny_runs):
    """final, late, best (and their exact-statistics twins) recomputed from metrics.csv for every network."""
    for init in ("good", "bad"):
        run = tiny_runs[init]
        for variant, v in run["variants"].items():
            for figures, split in ((v, "validation"), (v.get("precise_bn"), "validation_precise_bn")):
                rows = metrics_rows(run["dir"], variant, split)
                if figures is None:  # only the BN network has exact statistics
                    assert variant == "without_bn" and not rows
                    continue
                best = max(rows, key=lambda r: (r[1], -r[0]))  # the highest, earliest on a tie
                assert figures["best_val_accuracy"] == {"accuracy": best[1], "step": best[0]}, (init, variant, split)
                if v["diverged"]:
                    assert figures["final_val_accuracy"] is None and figures["late_val_accuracy"] is None
                    continue
                late = [r[1] for r in rows if r[0] > 54]  # the last 10% of 60 steps
                assert figures["final_val_accuracy"] == rows[-1][1], (init, variant, split)
                assert figures["late_val_accuracy"] == {
                    "mean": pytest.approx(sum(late) / len(late)),
                    "min": min(late),
                    "max": max(late),
                    "points": len(late),
                    "after_step": 54,
                }


@pytest.mark.slow
def test_the_accuracy_figure_draws_each_networks_validation_rows(tiny_runs):
    for init in ("good", "bad"):
        run = tiny_runs[init]
        lines = {line.get_label(): line for line in run["figure"].axes[0].lines}
        for variant, label in (("without_bn", "without BN"), ("with_bn", "with BN")):
            at = run["variants"][variant]["diverged_at_step"]
            label += f" (diverged at step {at:,})" if at is not None else ""
            rows = metrics_rows(run["dir"], variant, "validation")
            assert list(lines[label].get_xdata()) == [r[0] for r in rows], (init, label)
            assert list(lines[label].get_ydata()) == [r[1] for r in rows], (init, label)
        precise = metrics_rows(run["dir"], "with_bn", "validation_precise_bn")
        assert list(lines["with BN, exact population statistics"].get_ydata()) == [r[1] for r in precise]
        assert (run["dir"] / "accuracy.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.slow
def test_a_diverged_network_reports_no_speed_and_its_partner_a_steady_one(tiny_runs):
    bad = tiny_runs["bad"]["variants"]
    # It diverged in the first chunk, whose time is mostly compilation: no rate, not 0.1 steps/s.
    assert bad["without_bn"]["steps_per_second"] is None
    # Its partner's rate is its last chunk's (20 steps, a shape already compiled) alone: above the
    # 60 steps over all training time, of which tracing the first two shapes is most. No clock is pinned.
    rate, seconds = bad["with_bn"]["steps_per_second"], tiny_runs["bad"]["train_seconds"]
    assert 60 / seconds < rate < float("inf")


@pytest.mark.slow
def test_an_accuracy_of_logits_that_are_not_numbers_is_never_reported(tmp_path):
    """Weights of N(0, 1000²) through 16 relu layers overflow float32 at step 0 (inf, then NaN: by
    orders of magnitude, on any CPU). The argmax of NaN logits is class 0, whose share was reported as
    the plain network's best validation accuracy, "0.1000 @ 0" (issue 33): now no evaluation of such
    logits has an accuracy, and no figure is taken from one."""
    from bn_lab.report import printed
    from tests.conftest import tiny_mlp_config

    cfg = tiny_mlp_config(**{"model.hidden_units": [16] * 16, "init.scale": 1000.0})
    run = api.load(launch.run_config(cfg, out=tmp_path / "run", progress="none"))
    columns = zip(*(run.metrics[c] for c in ("variant", "step", "split", "accuracy")))
    at_zero = {v: a for v, step, split, a in columns if (step, split) == (0, "validation")}
    assert math.isnan(at_zero["without_bn"]) and math.isnan(at_zero["with_bn"])
    plain, bn = run.summary["variants"]["without_bn"], run.summary["variants"]["with_bn"]
    assert plain["diverged_at_step"] == 1 and plain["best_val_accuracy"] is None
    assert bn["best_val_accuracy"]["step"] > 0  # its step-0 evaluation (inference mode, NaN too) is left out
    lines = printed.report_text(run.summary, run.path).splitlines()
    best = next(line for line in lines if line.startswith("best validation accuracy @ step"))
    assert best.split()[-4:] == [
        "—",
        f"{bn['best_val_accuracy']['accuracy']:.4f}",
        "@",
        str(bn["best_val_accuracy"]["step"]),
    ]
