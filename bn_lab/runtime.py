"""Sets up TensorFlow for this process: device, threads, determinism."""

from __future__ import annotations

DEVICES = ("auto", "cpu", "gpu")


class DeviceError(Exception):
    """The requested device cannot be used; worded for the user."""


def configure(device: str = "auto", threads: int | None = None) -> dict:
    """Call before any TensorFlow op runs. Returns what was chosen, for environment.json.

    threads: TensorFlow's intra-op pool size (None: TensorFlow's default, all cores);
    a sweep running N cells at once gives each process cores // N so they share the
    machine instead of fighting over it.
    """
    if device not in DEVICES:
        raise DeviceError(f"--device {device}: unknown device; allowed: {', '.join(DEVICES)}")
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if device == "gpu" and not gpus:
        raise DeviceError(
            "--device gpu: TensorFlow sees no GPU on this machine "
            "(install the gpu extra, `pip install bn_lab[gpu]`, on a machine with an NVIDIA GPU); "
            "use --device cpu or --device auto"
        )
    if device == "cpu" and gpus:
        tf.config.set_visible_devices([], "GPU")
        gpus = []
    for gpu in gpus:  # several sweep processes may share one GPU
        tf.config.experimental.set_memory_growth(gpu, True)
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    # Same config and seed, same numbers: deterministic kernels (initial weights and
    # batch order come from numpy generators seeded by the config).
    tf.config.experimental.enable_op_determinism()
    return {
        "device": "gpu" if gpus else "cpu",
        "gpus": [g.name for g in gpus],
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or "default",
    }
