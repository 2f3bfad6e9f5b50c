"""What training a run's arms returns: each evaluation (metrics.csv's rows), each arm's final
figures, and the run's (bn_lab.training.train builds them; summary.json is made from them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Evaluation:
    variant: str  # the arm's name: metrics.csv's `variant` column
    step: int  # number of updates applied before this evaluation
    split: str  # one of schema's splits: VALIDATION, PRECISE_BN, BATCH_STATS, TRAIN_BATCH, TEST
    loss: float
    accuracy: float
    top_class_share: float | None = None  # share of the images predicted as the most predicted class


@dataclass
class ArmResult:
    diverged: bool = False
    diverged_at_step: int | None = None
    steps_trained: int = 0
    # Steady-state training speed: steps per second of the chunks this network trained in,
    # the first chunk (tracing and XLA compilation) left out; None if it trained in no other.
    # While several arms train, they train at once, and each reports that rate.
    steps_per_second: float | None = None
    final_top_class_share: float | None = None
    final_val_loss: float | None = None
    final_val_accuracy: float | None = None
    test_loss: float | None = None
    test_accuracy: float | None = None
    single_sample_inference: float | None = None
    single_sample_training: float | None = None  # None: not applicable (no population statistics)
    predictions: list[int] | None = None
    predictions_training: list[int] | None = None
    # Accuracy in training mode against the evaluation batch's size (evaluation.Evaluator.batch_size_curve);
    # None: not applicable (no batch statistics).
    batch_size_curve: dict | None = None


@dataclass
class TrainResult:
    evaluations: list[Evaluation]
    arms: dict[str, ArmResult]
    train_seconds: float
    single_samples: int
    diagnostics: list[dict]  # rows of diagnostics.csv: variant, step, layer, quantity, value
