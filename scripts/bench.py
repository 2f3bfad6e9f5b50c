#!/usr/bin/env python
"""Benchmark: bn_lab's trainer against a plain TensorFlow 2 port of the lessons (issue 4).

    python scripts/bench.py [--out results/bench.json] [--skip-run] [--whole-run-rounds N] [--quick]
                            [--also-run configs/convnet_keras.yaml ...]

One invocation measures, side by side, on the MLP (relu, lr 0.01, batch 60, plain SGD)
and the 20-layer conv net (batch 64, Adam 0.002), each without and with BN (keras
backend):

* naive: the plain Keras port, written out below (`naive_*`): a keras.Sequential of Dense or
  Conv2D (3x3, "same"), BatchNormalization and ReLU layers, SGD 0.01 (MLP) or Adam 0.002 (conv
  net), one tf.function call per training step, the training set resident as float32 and each
  batch indexed from it in numpy; TensorFlow's default settings;
* bn_lab: `bn_lab.training.train.Trainer`, set up by `bn_lab.runtime.configure` exactly as
  `bnlab run` does, timed through `train_steps` with the chunk length a real run uses
  (the steps between two evaluations: 500 for the MLP, 25 for the conv net). Each
  variant is timed alone, the pair (both variants at once, what `bnlab run` does),
  and four arms at once (FOUR_ARMS' arms: plain and BN with each of the three backends).

Side by side. `runtime.configure` fixes TensorFlow's process-wide settings (threads, op
determinism, oneDNN), and TensorFlow cannot change them once it runs. So each side runs in an
interpreter of its own (`--serve GROUP`, internal; see Group): the naive loops with
TensorFlow's defaults, bn_lab's trainer with bn_lab's settings, never one under the other's.
Both are built and warmed up first (compile time is excluded), then each variant is timed in
the one and at once in the other, the order reversed every other round: each ratio bn_lab/naive
compares two runs seconds apart, and the median over rounds is reported with each round's (this host's speed
drifts up to 2.5x within an hour). Per-chunk Python overhead is included for bn_lab and
per-step overhead for the naive loop, since both are part of what a user waits for.

The FLOP limit: a training step's floating-point operations from the network's shapes
(`training_flops`: forward multiply-adds times 3) over TensorFlow's float32 matrix product on a
2048x2048 matrix, measured in bn_lab's interpreter (its thread settings): each loop's steps/s
as a share of what that rate would allow.

Noise. This machine is shared. A round during which other processes used more than 0.25 of a
core (from /proc/stat, minus this process) is retried, a few times at most; the JSON records how
busy the machine was (`foreign_cores`). Figures are medians over rounds.

Data: loading MNIST from bn_lab's cache, best of 3, at most DATA_LOAD_LIMIT_S.

Whole runs (issue 35): `bnlab run` with its defaults for the conv net (configs/convnet_keras.yaml)
and the quick start (configs/relu_lr2_badinit.yaml), each as a subprocess into a temporary --out
directory (wall time, peak RSS, and the breakdown of its wall from the timers it records in
summary.json), beside the port's bare training of the same two networks for the same steps (the
naive loop in a fresh interpreter, its warm-up step left out), WHOLE_RUN_ROUNDS interleaved rounds:
the run's wall over the port's training seconds, and over the run's own training steps. Any
--also-run config runs end to end alone.

Overheads: the same end-to-end run of relu_lr2_badinit with the optional per-evaluation
work switched off and on (OVERHEAD_RUNS), OVERHEAD_ROUNDS times each, interleaved; a
setting's ratio is the median over rounds of its wall time over the same round's run with
all of it off, beside the most it may cost: exact population statistics 15%, diagnostics
10%, diagnostics with the landscape 50%.

Ratios: `alone` = bn_lab one variant / naive same variant. `pair` compares the time to
train both networks of a pair for one step each: naive does them one after the other
(1/r_without + 1/r_with), bn_lab trains them together. `four/pair` = a step of the four
arms over a step of the pair, in time (about 2 expected: twice the networks).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bn_lab import runtime  # light: TensorFlow loads in runtime.configure()
from bn_lab.config.arms import LESSON_NAMES  # light: no TensorFlow
from bn_lab.config.yaml_io import read_yaml

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = LESSON_NAMES  # the lesson's pair: plain, and BN
# Four arms (plain and BN with each backend), timed beside the pair: they should cost about
# twice the pair's time per step, not more.
FOUR_ARMS = ROOT / "configs" / "backends_side_by_side.yaml"
CONFIGS = {"mlp": ROOT / "configs" / "relu_lr0.01_goodinit.yaml", "convnet": ROOT / "configs" / "convnet_keras.yaml"}
# Steps per timed round (a multiple of the model's chunk) and rounds per measurement.
PLAN = {"mlp": {"steps": 2000, "rounds": 5}, "convnet": {"steps": 100, "rounds": 5}}
OVERHEAD_CONFIG = ROOT / "configs" / "relu_lr2_badinit.yaml"
# Whole runs (defaults) timed beside the port's bare training of the same networks (issue 35).
WHOLE_RUNS = {"conv net": ROOT / "configs" / "convnet_keras.yaml", "quick start": OVERHEAD_CONFIG}
WHOLE_RUN_ROUNDS = 2
# name -> (--set overrides, the most it may cost as a multiple of the first run's wall time).
# The first is the baseline: every optional per-evaluation piece off.
OVERHEAD_RUNS = {
    "all optional work off": ({"precise_bn.enabled": "false", "diagnostics.enabled": "false"}, None),
    "precise_bn": ({"diagnostics.enabled": "false"}, 1.15),  # issue 9
    "diagnostics": ({"precise_bn.enabled": "false"}, 1.10),  # issue 11
    "diagnostics + landscape": ({"precise_bn.enabled": "false", "diagnostics.landscape": "true"}, 1.50),  # issue 11
    "the defaults (precise_bn + diagnostics)": ({}, None),
}
OVERHEAD_ROUNDS = 3  # each run this often, the runs interleaved; the median counts
QUICK = {"mlp": {"steps": 1000, "rounds": 3}, "convnet": {"steps": 50, "rounds": 3}}
DATA_LOAD_LIMIT_S = 0.5  # loading MNIST from the cache, best of 3, warm page cache
MAX_FOREIGN = 0.25  # cores other processes may use during a round before it is retried
RETRIES = 2  # extra attempts per round when the machine was busy


# --- measuring on a shared machine -------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _busy_ticks() -> int:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return sum(fields) - fields[3] - fields[4]  # everything but idle and iowait


def _own_ticks() -> float:
    t = os.times()
    return (t.user + t.system) * _TICK


def timed(fn) -> tuple[float, float]:
    """Runs fn(); returns (seconds, cores used meanwhile by other processes)."""
    busy, own, start = _busy_ticks(), _own_ticks(), time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    foreign = ((_busy_ticks() - busy) - (_own_ticks() - own)) / _TICK / seconds
    return seconds, max(0.0, foreign)


def measure_rounds(jobs: dict, rounds: int) -> dict:
    """jobs: name -> (fn, steps per call). Alternates the jobs round by round; steps/s per job."""
    out = {name: {"rates": [], "foreign_cores": []} for name in jobs}
    for _ in range(rounds):
        for name, (fn, steps) in jobs.items():
            for attempt in range(RETRIES + 1):
                seconds, foreign = timed(fn)
                if foreign <= MAX_FOREIGN or attempt == RETRIES:
                    break
            out[name]["rates"].append(steps / seconds)
            out[name]["foreign_cores"].append(round(foreign, 2))
    for r in out.values():
        r["steps_per_second"] = statistics.median(r["rates"])
        r["rates"] = [round(x, 1) for x in r["rates"]]
    return out


# --- the naive port (TensorFlow defaults: no bn_lab.runtime here) --------------------------


def naive_model(model: str, with_bn: bool):
    import keras

    layers = []
    if model == "mlp":
        layers.append(keras.Input((784,)))
        for _ in range(3):
            layers.append(keras.layers.Dense(100, use_bias=not with_bn))
            if with_bn:
                layers.append(keras.layers.BatchNormalization(momentum=0.99, epsilon=1e-3))
            layers.append(keras.layers.Activation("relu"))
    else:
        layers.append(keras.Input((28, 28, 1)))
        for i in range(1, 20):
            layers.append(
                keras.layers.Conv2D(4 * i, 3, strides=2 if i % 3 == 0 else 1, padding="same", use_bias=not with_bn)
            )
            if with_bn:
                layers.append(keras.layers.BatchNormalization(momentum=0.99, epsilon=1e-3))
            layers.append(keras.layers.Activation("relu"))
        layers.append(keras.layers.Flatten())
        layers.append(keras.layers.Dense(100, use_bias=not with_bn))
        if with_bn:
            layers.append(keras.layers.BatchNormalization(momentum=0.99, epsilon=1e-3))
        layers.append(keras.layers.Activation("relu"))
    layers.append(keras.layers.Dense(10))
    return keras.Sequential(layers)


def naive_trainer(model: str, with_bn: bool, images, labels, batch_size: int, learning_rate: float | None = None):
    """Returns run(steps): the plain loop, one tf.function call per step, batches from numpy
    (learning_rate: the lessons' 0.01 for the MLP, 0.002 for the conv net, unless given)."""
    import numpy as np
    import tensorflow as tf

    net = naive_model(model, with_bn)
    if model == "mlp":
        optimizer = tf.keras.optimizers.SGD(learning_rate=learning_rate or 0.01)

        def loss_fn(labels, logits):
            return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))

    else:
        optimizer = tf.keras.optimizers.Adam(learning_rate=learning_rate or 0.002, epsilon=1e-8)

        def loss_fn(labels, logits):
            return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.one_hot(labels, 10), logits=logits))

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, net(x, training=True))
        gradients = tape.gradient(loss, net.trainable_variables)
        optimizer.apply_gradients(zip(gradients, net.trainable_variables))
        return loss

    rng = np.random.default_rng(0)
    shape = (-1, 784) if model == "mlp" else (-1, 28, 28, 1)
    resident = (images.astype(np.float32) / 255.0).reshape(shape)  # the training set, resident as float32
    position = [0]
    order = rng.permutation(len(labels))

    def run(steps: int):
        for _ in range(steps):
            start = position[0] % (len(labels) - batch_size)
            index = order[start : start + batch_size]
            train_step(resident[index], labels[index])  # each batch indexed from numpy
            position[0] += batch_size

    return run


def naive_jobs(model: str, plan: dict) -> tuple[dict, dict]:
    from bn_lab.data import mnist as data

    mnist = data.load_mnist()
    batch = 60 if model == "mlp" else 64
    jobs = {}
    for v in VARIANTS:
        run = naive_trainer(model, v == "with_bn", mnist.train.images, mnist.train.labels, batch)
        run(3)  # warm-up: traces and compiles train_step
        run(plan["steps"] // 10)
        jobs[v] = (lambda run=run: run(plan["steps"]), plan["steps"])
    import tensorflow as tf

    settings = {
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "onednn": _onednn(),
    }
    return settings, jobs


# --- bn_lab's trainer, configured like a real run --------------------------------------------


def bnlab_jobs(model: str, plan: dict) -> tuple[dict, dict]:
    settings = runtime.configure("auto")  # what `bnlab run` does first

    from bn_lab.config import declared
    from bn_lab.config import loading as configs
    from bn_lab.data import mnist as data
    from bn_lab.nets import weights as initial
    from bn_lab.training import train

    base = configs.load(CONFIGS[model])
    t = base["train"]
    chunk = math.gcd(t["eval_every"], t["train_eval_every"]) if t["train_eval_every"] else t["eval_every"]
    calls = max(1, plan["steps"] // chunk)
    steps = calls * chunk
    # Enough batches for the warm-up call and every round (a Trainer never reuses a step).
    total = chunk * (1 + calls * plan["rounds"] * (RETRIES + 1))
    config = configs.load(CONFIGS[model], {"train.steps": total})
    tree = configs.apply_overrides(read_yaml(CONFIGS[model]), {"train.steps": total})
    four = configs.validate({**tree, "arms": read_yaml(FOUR_ARMS)["arms"]})
    mnist = data.load_mnist()
    weights = initial.initial_weights(config, declared.architecture(config))
    jobs = {}
    for name, cfg, arms in (
        ("without_bn", config, ("without_bn",)),
        ("with_bn", config, ("with_bn",)),
        ("pair", config, VARIANTS),
        ("four", four, None),
    ):
        trainer = train.Trainer(cfg, mnist, weights, arms=arms)
        trainer.train_steps(chunk)  # warm-up: traces and compiles

        def run(trainer=trainer):
            for _ in range(calls):
                trainer.train_steps(chunk)
            if trainer.diverged_at:
                raise RuntimeError(f"diverged while benchmarking: {trainer.diverged_at}")

        jobs[name] = (run, steps)
    settings = dict(
        settings,
        onednn=_onednn(),
        jit_compile=config["train"]["jit_compile"],
        chunk=chunk,
        matmul_peak_gflops=matmul_peak_gflops(),
    )
    return settings, jobs


# A float32 matrix product large enough to run at the machine's peak, with bn_lab's thread settings.
PEAK_SIDE = 2048


def matmul_peak_gflops() -> float:
    """TensorFlow's float32 matrix product on this machine (best of 5): the FLOP limit's rate."""
    import tensorflow as tf

    a = tf.random.stateless_uniform((PEAK_SIDE, PEAK_SIDE), seed=(1, 2))
    product = tf.function(lambda a: tf.matmul(a, a), autograph=False)
    product(a).numpy()
    best = min(timed(lambda: product(a).numpy())[0] for _ in range(5))
    return round(2 * PEAK_SIDE**3 / best / 1e9, 1)


def training_flops(config_path: Path) -> int:
    """Floating-point operations of one training step of a config's network, from its shapes alone:
    each layer's forward multiply-adds (2 per product: a 3x3 "same" convolution counts all 9 taps
    at every output position, padding included, as FLOP counts usually do) for a batch, times 3
    (the forward pass, the gradient of the inputs and that of the weights)."""
    from bn_lab.config import declared
    from bn_lab.config import loading as configs

    config = configs.load(config_path)
    flops = 0
    for layer in declared.architecture(config).layers:
        output = layer.output_shape
        positions = output[0] * output[1] if len(output) == 3 else 1
        flops += 2 * positions * math.prod(layer.kernel_shape)
    return 3 * flops * config["train"]["batch_size"]


def _onednn() -> bool | None:
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None


# --- end to end -------------------------------------------------------------------------------


def timed_child(command: list[str], **popen):
    """Runs a command to its end: (the process, its returncode set, its stdout and stderr as text;
    its own rusage, not that of the other children; wall seconds; cores other processes used
    meanwhile). Its output goes to files, not pipes: waiting on a child that fills a pipe would
    never end."""
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        busy, own, start = _busy_ticks(), _own_ticks(), time.perf_counter()
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, **popen)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        child_cpu = (usage.ru_utime + usage.ru_stime) * _TICK
        foreign = max(0.0, ((_busy_ticks() - busy) - (_own_ticks() - own) - child_cpu) / _TICK / wall)
        process.returncode = os.waitstatus_to_exitcode(status)
        for stream, name in ((stdout, "stdout"), (stderr, "stderr")):
            stream.seek(0)
            setattr(process, name, stream.read().decode(errors="replace"))
    return process, usage, wall, foreign


def run_end_to_end(config: Path, overrides: dict | None = None, env: dict | None = None) -> dict:
    """`bnlab run CONFIG [--set K=V ...]` in a subprocess: wall seconds and that process's peak RSS."""
    bnlab = Path(sys.executable).with_name("bnlab")
    command = [str(bnlab)] if bnlab.exists() else [sys.executable, "-m", "bn_lab.cli"]
    with tempfile.TemporaryDirectory(prefix="bnlab-bench-") as tmp:
        out = Path(tmp) / "run"
        process, usage, wall, foreign = timed_child(
            command
            + ["run", str(config), "--out", str(out), "--quiet"]
            + [f"--set={k}={v}" for k, v in (overrides or {}).items()],
            env=env,
        )
        if process.returncode != 0:
            raise RuntimeError(f"bnlab run {config} failed ({process.returncode}):\n{process.stderr}")
        summary = json.loads((out / "summary.json").read_text())
    return {
        "config": str(config.relative_to(ROOT) if config.is_relative_to(ROOT) else config),
        "overrides": overrides or {},
        "wall_seconds": round(wall, 1),
        "train_seconds": summary["train_seconds"],
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # Linux: ru_maxrss is in KiB
        "foreign_cores": round(foreign, 2),
        "diverged": {v: r["diverged_at_step"] for v, r in summary["variants"].items() if r["diverged"]},
        # Where the run's wall went, from the timers every run records (bn_lab.training.timers).
        "timings": summary.get("timings"),
    }


def port_training(config_path: Path) -> dict:
    """`--port CONFIG` (internal), in an interpreter with TensorFlow's defaults: the naive loop trains
    the config's two networks (without and with BN: its model, batch size, learning rate and
    steps), one after the other, as a plain port would. Seconds of each one's training alone:
    its steps after one warm-up step, whose tracing is left out (in the port's favour)."""
    from bn_lab.config import loading as configs
    from bn_lab.data import mnist as data

    config = configs.load(config_path)
    model = "mlp" if config["model"]["name"] == "mlp" else "convnet"
    train = config["train"]
    mnist = data.load_mnist()
    seconds = {}
    for v in VARIANTS:
        run = naive_trainer(
            model,
            v == "with_bn",
            mnist.train.images,
            mnist.train.labels,
            train["batch_size"],
            config["optimizer"]["learning_rate"],
        )
        run(1)  # warm-up: traces and compiles train_step
        seconds[v] = round(timed(lambda run=run: run(train["steps"]))[0], 2)
    return {"seconds": seconds, "steps": train["steps"]}


def port_end_to_end(config: Path) -> dict:
    """port_training(config) in a fresh interpreter (TensorFlow's defaults, not bn_lab's settings)."""
    process, _, _, foreign = timed_child(
        [sys.executable, str(Path(__file__).resolve()), "--port", str(config)], cwd=ROOT
    )
    if process.returncode != 0:
        raise RuntimeError(f"the port's training of {config.name} failed:\n{process.stderr}")
    found = json.loads(process.stdout)
    return {**found, "training_seconds": round(sum(found["seconds"].values()), 2), "foreign_cores": round(foreign, 2)}


@contextlib.contextmanager
def empty_xla_cache():
    """The environment of a `bnlab run` whose XLA cache (bn_lab.runtime.use_xla_cache) starts empty:
    a cache directory of its own, holding the user's converted MNIST (a link: not converted again)."""
    from bn_lab.data.mnist import CACHE_FILENAME

    with tempfile.TemporaryDirectory(prefix="bnlab-bench-cache-") as cache:
        if (mnist := runtime.cache_dir() / CACHE_FILENAME).is_file():
            (Path(cache) / CACHE_FILENAME).symlink_to(mnist)
        env = {k: v for k, v in os.environ.items() if k != runtime.TF_XLA_FLAGS}
        yield {**env, "BNLAB_CACHE_DIR": cache}


def whole_runs(rounds: int) -> dict:
    """Each WHOLE_RUNS config: `bnlab run` end to end (defaults) beside the port's bare training of the
    same two networks for the same steps, interleaved (the order reversed every other round: this
    host's speed drifts); per round the run's wall over the port's training seconds, the median
    reported with each round's. First, untimed against the port, the run as on a machine where
    bn_lab never ran: its XLA cache empty. The rounds then find its compiled code there, as every
    later run of the config does."""
    found = {}
    for name, config in WHOLE_RUNS.items():
        runs, ports = [], []
        with empty_xla_cache() as env:
            print(f"whole run: {name}, its XLA cache empty ...", file=sys.stderr, flush=True)
            first = run_end_to_end(config, env=env)
            for round_ in range(rounds):
                print(f"whole run: {name}, round {round_ + 1}/{rounds} ...", file=sys.stderr, flush=True)
                for side in ("run", "port")[:: -1 if round_ % 2 else 1]:
                    if side == "run":
                        runs.append(run_end_to_end(config, env=env))
                    else:
                        ports.append(port_end_to_end(config))
        ratios = [r["wall_seconds"] / p["training_seconds"] for r, p in zip(runs, ports)]
        middle = sorted(range(rounds), key=lambda k: ratios[k])[rounds // 2]
        run = runs[middle]
        steps = run["timings"]["training_steps"] if run.get("timings") else run["train_seconds"]
        found[name] = {
            "config": run["config"],
            "steps": ports[middle]["steps"],
            "first_run": first,  # the XLA cache empty: compiling everything
            "run": run,  # the median round's run, with its breakdown
            "run_walls": [r["wall_seconds"] for r in runs],
            "port": ports[middle],
            "port_training_seconds": [p["training_seconds"] for p in ports],
            "run_over_port": round(statistics.median(ratios), 2),
            "run_over_port_per_round": [round(r, 2) for r in ratios],
            # the run's wall over its own training steps (the issue's "a run costs its training")
            "wall_over_steps": round(run["wall_seconds"] / steps, 2),
        }
    return found


def measure_overheads(rounds: int, names: list[str] | None = None) -> dict:
    """Each OVERHEAD_RUNS setting end to end `rounds` times, interleaved.

    This host's speed drifts by tens of percent over minutes, so a setting is compared with
    the baseline run of the same round (seconds apart; the order reversed every other round):
    its ratio is the median over rounds of those per-round ratios, with their range beside it.
    """
    settings = {n: v for n, v in OVERHEAD_RUNS.items() if names is None or n in names or n == next(iter(OVERHEAD_RUNS))}
    walls = {name: [] for name in settings}
    runs = {}
    for round_ in range(rounds):
        # Every other round in reverse order: a drift of the host's speed within a round then
        # favours no setting.
        for name, (overrides, _) in list(settings.items())[:: -1 if round_ % 2 else 1]:
            print(f"overhead: {name} (round {round_ + 1}/{rounds}) ...", file=sys.stderr, flush=True)
            runs[name] = run_end_to_end(OVERHEAD_CONFIG, overrides)
            walls[name].append(runs[name]["wall_seconds"])
    baseline = next(iter(walls.values()))
    for name, (_, limit) in settings.items():
        ratios = [w / b for w, b in zip(walls[name], baseline)]
        runs[name].update(
            wall_seconds=statistics.median(walls[name]),
            wall_seconds_each=walls[name],
            ratio=round(statistics.median(ratios), 3),
            ratios=[round(r, 3) for r in ratios],
            limit=limit,
        )
    return runs


# --- driver -----------------------------------------------------------------------------------


def measure_data_load() -> dict:
    """Seconds to load MNIST from bn_lab's uint8 cache (what every run does first), best of 3."""
    from bn_lab.data import mnist as data

    data.load_mnist()  # fills the cache if it is empty, and warms the page cache
    seconds = [timed(data.load_mnist)[0] for _ in range(3)]
    return {
        "seconds_best": round(min(seconds), 3),
        "seconds_each": [round(x, 3) for x in seconds],
        "limit": DATA_LOAD_LIMIT_S,
    }


class Group:
    """One measurement group (`naive:MODEL` or `bn_lab:MODEL`) in a fresh interpreter of its own
    (`--serve GROUP`): it builds and warms up its jobs, then runs one round of them each time it
    is asked, and waits meanwhile. Two groups asked in turn are measured side by side."""

    def __init__(self, group: str, quick: bool):
        command = [sys.executable, str(Path(__file__).resolve()), "--serve", group] + (["--quick"] if quick else [])
        self.group = group
        self.process = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.settings = self._answer()

    def _answer(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.group} failed (exit status {self.process.wait()}); its errors are above")
        return json.loads(line)

    def jobs(self) -> list[str]:
        return self.settings["jobs"]

    def measure(self, job: str) -> dict:
        """One timed run of one job: {"rates": [...], "foreign_cores": [...], ...}."""
        self.process.stdin.write(job + "\n")
        self.process.stdin.flush()
        return self._answer()[job]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def serve(group: str, plan: dict) -> None:
    """`--serve GROUP`: builds the jobs, prints their settings, then one JSON line per round asked."""
    side, model = group.split(":")
    settings, jobs = (naive_jobs if side == "naive" else bnlab_jobs)(model, plan[model])
    print(json.dumps({**settings, "jobs": list(jobs)}), flush=True)
    for line in sys.stdin:
        job = line.strip()
        print(json.dumps(measure_rounds({job: jobs[job]}, 1)), flush=True)


def side_by_side(model: str, rounds: int, quick: bool) -> dict:
    """The naive loop and bn_lab's trainer side by side: in each round, each variant timed in the
    one and then in the other (the order reversed every other round), so that each ratio
    bn_lab/naive compares two runs seconds apart: this host's speed drifts. bn_lab's other jobs
    (the pair, four arms) follow in the round."""
    print(f"measuring {model}: naive loop and bn_lab, {rounds} interleaved rounds ...", file=sys.stderr, flush=True)
    groups = {"naive": Group(f"naive:{model}", quick), "bn_lab": Group(f"bn_lab:{model}", quick)}
    found = {side: {} for side in groups}
    try:
        for round_ in range(rounds):
            order = [(side, v) for v in VARIANTS for side in list(groups)[:: -1 if round_ % 2 else 1]]
            order += [("bn_lab", job) for job in groups["bn_lab"].jobs() if job not in VARIANTS]
            for side, job in order:
                result = groups[side].measure(job)
                into = found[side].setdefault(job, {"rates": [], "foreign_cores": []})
                into["rates"] += result["rates"]
                into["foreign_cores"] += result["foreign_cores"]
    finally:
        for group in groups.values():
            group.close()
    for results in found.values():
        for r in results.values():
            r["steps_per_second"] = statistics.median(r["rates"])
    n, b = found["naive"], found["bn_lab"]
    naive_pair = [1 / sum(1 / n[v]["rates"][k] for v in VARIANTS) for k in range(rounds)]
    flops = training_flops(CONFIGS[model])
    peak = groups["bn_lab"].settings["matmul_peak_gflops"]
    per_round = {v: [b[v]["rates"][k] / n[v]["rates"][k] for k in range(rounds)] for v in VARIANTS}
    return {
        "naive": n,
        "bn_lab": b,
        "naive_settings": groups["naive"].settings,
        "bn_lab_settings": groups["bn_lab"].settings,
        "ratio_alone": {v: round(statistics.median(per_round[v]), 2) for v in VARIANTS},
        "ratio_alone_per_round": {v: [round(r, 2) for r in per_round[v]] for v in VARIANTS},
        "naive_pair_steps_per_second": round(statistics.median(naive_pair), 1),
        "ratio_pair": round(
            statistics.median(b["pair"]["rates"][k] / naive_pair[k] for k in range(rounds)),
            2,
        ),
        "four_over_pair": round(b["pair"]["steps_per_second"] / b["four"]["steps_per_second"], 2),
        "training_flops_per_step": flops,
        "matmul_peak_gflops": peak,
        # steps/s x FLOPs per step / the measured peak: how much of the machine each loop uses
        "flop_limit_share": {
            side: {v: round(found[side][v]["steps_per_second"] * flops / (peak * 1e9), 3) for v in VARIANTS}
            for side in found
        },
    }


def table(report: dict) -> str:
    lines = [
        f"{'model':8} {'variant':11} {'naive steps/s':>14} {'bn_lab steps/s':>15} {'bn_lab/naive':>13}"
        f"  {'share of the FLOP limit: naive, bn_lab':>38}"
    ]
    for model, m in report["models"].items():
        share = m["flop_limit_share"]
        rows = [
            (
                v,
                m["naive"][v]["steps_per_second"],
                m["bn_lab"][v]["steps_per_second"],
                m["ratio_alone"][v],
                f"{share['naive'][v]:.1%}, {share['bn_lab'][v]:.1%}",
            )
            for v in VARIANTS
        ]
        rows.append(
            ("pair*", m["naive_pair_steps_per_second"], m["bn_lab"]["pair"]["steps_per_second"], m["ratio_pair"], "")
        )
        for name, naive, ours, ratio, shares in rows:
            lines.append(f"{model:8} {name:11} {naive:14,.1f} {ours:15,.1f} {ratio:12.2f}x  {shares:>38}")
        rounds = "; ".join(f"{v} {', '.join(f'{r:.2f}' for r in m['ratio_alone_per_round'][v])}" for v in VARIANTS)
        lines.append(
            f"{model:8} bn_lab/naive round by round: {rounds}; FLOP limit: "
            f"{m['training_flops_per_step'] / 1e9:.3f} GFLOP a step at {m['matmul_peak_gflops']:.0f} GFLOP/s "
            f"(TensorFlow's float32 matmul here) = {m['matmul_peak_gflops'] * 1e9 / m['training_flops_per_step']:,.0f} steps/s"
        )
        if "four" in m["bn_lab"]:
            lines.append(
                f"{model:8} {'four arms':11} {'':>14} {m['bn_lab']['four']['steps_per_second']:15,.1f}"
                f"   a step costs {m['four_over_pair']:.2f}x the pair's"
            )
    lines.append("* pair: steps/s of each network when both networks of a pair train one step each (naive: one")
    lines.append("  after the other, 1/(1/r_without + 1/r_with); bn_lab: both at once, as `bnlab run` does)")
    if "data_load" in report:
        load = report["data_load"]
        met = "met" if load["seconds_best"] <= load["limit"] else "NOT met"
        lines.append(
            f"MNIST from the cache: {load['seconds_best']:.3f} s (best of 3; at most {load['limit']} s: {met})"
        )
    overheads = report.get("overheads", {})
    for name, run in overheads.items():
        limit = (
            f" (at most {run['limit']:.2f}x: {'met' if run['ratio'] <= run['limit'] else 'NOT met'})"
            if run["limit"]
            else ""
        )
        walls = ", ".join(f"{w:.1f}" for w in run["wall_seconds_each"])
        spread = f" (per round {min(run['ratios']):.2f}-{max(run['ratios']):.2f})" if len(run["ratios"]) > 1 else ""
        lines.append(
            f"overhead, {name}: {run['wall_seconds']:.1f} s wall (median of {walls}), "
            f"{run['ratio']:.3f}x the first{spread}{limit}"
        )
    for name, whole in report.get("whole_runs", {}).items():
        run, port = whole["run"], whole["port"]
        lines.append(
            f"{name}: `bnlab run {whole['config']}` {statistics.median(whole['run_walls']):.1f} s wall (rounds "
            f"{', '.join(f'{w:.1f}' for w in whole['run_walls'])}); the port's bare training of its two networks for "
            f"{whole['steps']:,} steps {statistics.median(whole['port_training_seconds']):.1f} s "
            f"({', '.join(f'{v} {t:.1f}' for v, t in port['seconds'].items())}); run/port {whole['run_over_port']:.2f}x "
            f"(rounds {', '.join(f'{r:.2f}' for r in whole['run_over_port_per_round'])}); "
            f"the run's wall is {whole['wall_over_steps']:.2f}x its training steps"
        )
        described = (("that run's", run), ("the first run's, its XLA cache empty,", whole.get("first_run")))
        for what, shown in described:
            if shown and shown.get("timings"):
                parts = [f"{k.replace('_', ' ')} {v:.1f}" for k, v in shown["timings"].items() if k != "wall"]
                lines.append(f"  where {what} {shown['timings']['wall']:.1f} s went: " + ", ".join(parts))
    for run in report.get("runs", []):
        lines.append(
            f"bnlab run {run['config']}: {run['wall_seconds']:.1f} s wall ({run['train_seconds']:.1f} s training), "
            f"peak RSS {run['peak_rss_mib']:,.0f} MiB"
        )
        if run.get("timings"):  # the run's own breakdown of its wall (summary.json's timings)
            parts = [
                f"{kind.replace('_', ' ')} {seconds:.1f}" for kind, seconds in run["timings"].items() if kind != "wall"
            ]
            lines.append(f"  where its {run['timings']['wall']:.1f} s went: " + ", ".join(parts))
    busy = [
        c
        for m in report["models"].values()
        for side in ("naive", "bn_lab")
        for r in m[side].values()
        for c in r["foreign_cores"]
    ]
    if busy:
        lines.append(
            f"(machine: {report['machine']['cpus']} CPUs; other processes used {statistics.median(busy):.2f} cores "
            f"(median), {max(busy):.2f} (max) during the timed rounds)"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "results" / "bench.json"), help="JSON file to write")
    parser.add_argument(
        "--skip-run", action="store_true", help="skip the whole runs beside the port (WHOLE_RUNS) and --also-run"
    )
    parser.add_argument(
        "--whole-run-rounds", type=int, default=WHOLE_RUN_ROUNDS, help="rounds of each whole run and its port"
    )
    parser.add_argument("--skip-overheads", action="store_true", help="skip the overhead runs (OVERHEAD_RUNS)")
    parser.add_argument("--overhead-rounds", type=int, default=OVERHEAD_ROUNDS, help="runs of each overhead setting")
    parser.add_argument(
        "--overheads", help="comma-separated names of OVERHEAD_RUNS to run (default: all; the baseline always)"
    )
    parser.add_argument(
        "--also-run", action="append", default=[], metavar="CONFIG", help="another config to time end to end"
    )
    parser.add_argument("--models", default="mlp,convnet", help="comma-separated: mlp, convnet (empty: none)")
    parser.add_argument("--quick", action="store_true", help="fewer steps and rounds (a smoke test of this script)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # internal: one measurement group (Group)
    parser.add_argument("--port", help=argparse.SUPPRESS)  # internal: the port's training of a config
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else PLAN

    if args.serve:
        serve(args.serve, plan)
        return 0
    if args.port:
        print(json.dumps(port_training(Path(args.port))), flush=True)
        return 0

    started = time.perf_counter()
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu": runtime.cpu(),  # its vector extensions decide the kernels, naive and bn_lab's alike
            "load_average_at_start": os.getloadavg(),
        },
        "plan": plan,
        "models": {},
        "runs": [],
    }
    report["data_load"] = measure_data_load()
    for model in filter(None, args.models.split(",")):  # --models "": only the end-to-end runs
        report["models"][model] = side_by_side(model, plan[model]["rounds"], args.quick)
    if not args.skip_run:
        report["whole_runs"] = whole_runs(1 if args.quick else args.whole_run_rounds)
        for config in [Path(c).resolve() for c in args.also_run]:
            print(f"bnlab run {config.name} ...", file=sys.stderr, flush=True)
            report["runs"].append(run_end_to_end(config))
    if not args.skip_overheads:
        chosen = args.overheads.split(",") if args.overheads else None
        report["overheads"] = measure_overheads(1 if args.quick else args.overhead_rounds, chosen)
    report["load_average_at_end"] = os.getloadavg()
    report["bench_seconds"] = round(time.perf_counter() - started, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"benchmark took {report['bench_seconds']:.0f} s; written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
