"""The normalizers an arm can put in its hidden layers, each one file behind one interface
(registry.NORMALIZERS is the only list).

A normalizer is a `Normalizer` subclass made by `make(name, shape, **options)`, where `shape` is
one example's shape at the normalizer's input, (features,) for a dense layer or
(height, width, channels) for a conv layer. It has
  - `__call__(x, training, group_size=None)`: the normalized x (group_size: a batch-statistics
    normalizer's groups for this call, None its own, 0 the whole batch: see bn_lab.nets.bn.groups). Whatever training mode updates (population
    statistics, a step count) is in `population_statistics`; inference mode updates nothing;
  - `gamma`, `beta`: its trainable scale and offset (tf.Variables);
  - `population_statistics`: the non-trainable variables training mode changes ([] if none),
    what models.kept() puts back after a check, named by `STATISTICS` (in weights.npz);
  - with population statistics, `exact_statistics(mean, variance)`: the values they take for
    exact statistics, from the mean and biased variance of its input over the fixed batches
    (None for one that stays as it was, a step count), and `batch_moments(x, group_size=None)`:
    that mean and variance of one batch, over its groups where it has `group_size` or the call
    gives one (bn_lab.nets.bn.groups);
and declares, as an optimizer declares its norm power, in plain Python (the config checks an
arm against these before TensorFlow is imported):
  - `OPTIONS`: each option's default (a given option must be of the default's type), and
    `CHOICES`: the options whose value is one of a few names (a registry, or a tuple of names);
  - `HAS_POPULATION_STATISTICS`: whether inference mode uses statistics gathered in training
    (exact statistics and the single-image training-mode check apply only then);
  - `SCALE_INVARIANCE`: which part of the preceding kernel can be rescaled without changing the
    output, so what an SGD step means: "column" (each kernel column: lr/‖w_j‖²), "matrix" (the
    whole kernel: lr/‖W‖_F²) or "group" (each group of columns, `groups` of them);
  - `SEEDED`: it draws random numbers, and is given `seed=(run seed, arm, layer)`;
  - `RESIDUAL`: it belongs in residual blocks (a model whose declaration says RESIDUAL) and is
    given `layer=` (its bn_lab.nets.architecture.Layer: what it does depends on the layer's role)
    and `blocks=` (the network's residual blocks); `HIDDEN_BIAS`: whether the hidden layers keep
    their per-channel bias (None: the arm's placement says).
A residual normalizer may also change what a layer sees and starts from: `before_kernel(x)` (its
input, before the kernel: identity unless overridden) and the class method
`initial_kernels(architecture, kernels)` (the arm's kernels from the run's shared initial weights).
`trainable` names its trainable variables (gamma and beta unless overridden), as weights.npz does;
`LEARNING_RATE_FACTORS` gives some of them (by name) a smaller learning rate, applied to their
gradients (Network.step_gradients: exactly a learning-rate factor for SGD; Adam's steps do not
scale with the gradient, so there it changes nothing).
Each file imports TensorFlow inside its methods: declaring costs nothing.
"""

from __future__ import annotations

from bn_lab import registry

SCALE_INVARIANCES = ("column", "matrix", "group")


class Normalizer:
    OPTIONS: dict = {}
    CHOICES: dict = {}  # option -> the names its value may take (a registry or a tuple)
    HAS_POPULATION_STATISTICS = False
    SCALE_INVARIANCE: str | None = "column"  # None: nothing of the kernel cancels
    STATISTICS: tuple = ()
    population_statistics: tuple = ()  # the variables named by STATISTICS (an instance's own)
    SEEDED = False
    RESIDUAL = False
    HIDDEN_BIAS: bool | None = None
    LEARNING_RATE_FACTORS: dict = {}  # trainable variable's name -> factor on the learning rate
    groups = 1  # how many groups of columns share one scale ("group" invariance)
    group_size = 0  # the examples whose batch statistics normalize each other (0: the whole batch)

    @classmethod
    def problem(cls, shape: tuple[int, ...], options: dict) -> str | None:
        """What is wrong with these (resolved) options for inputs of this shape (checked with the config)."""
        if not 0 < options.get("momentum", 0.5) < 1:
            return f"momentum must be strictly between 0 and 1, got {options['momentum']}"
        if not options.get("epsilon", 1) > 0:
            return f"epsilon must be > 0, got {options['epsilon']}"
        return None

    @property
    def trainable(self) -> dict:
        """Its trainable variables by name (weights.npz's layer<k>/<name>), in a fixed order."""
        return {"gamma": self.gamma, "beta": self.beta}

    def before_kernel(self, x):
        """The layer's input as its kernel sees it."""
        return x

    @classmethod
    def initial_kernels(cls, architecture, kernels: list) -> list:
        """The arm's initial kernels (numpy, one per declared layer) from the run's shared ones."""
        return kernels

    def exact_statistics(self, mean, variance) -> list:
        raise NotImplementedError(f"{type(self).__name__} has no population statistics")

    def for_exact_statistics(self, x, group_size: int | None = None):
        """x normalized as inference will normalize it, with batch moments in place of the population's.
        Training mode for BN (fvcore's precise_bn pass); a normalizer whose training mode does more
        (a correction, noise) leaves that out here."""
        return self(x, True, group_size)

    def batch_moments(self, x, group_size: int | None = None):
        """The mean and biased variance of x per feature that training mode normalizes with (averaged
        over the groups, with `group_size`: this call's, None its own): what exact statistics
        average over batches."""
        from bn_lab.nets.bn import groups

        return groups.moments(x, self.group_size if group_size is None else group_size)


def declared(name: str) -> type[Normalizer]:
    """The class registered as `name` (importing it imports no TensorFlow)."""
    return registry.NORMALIZERS.get(name)


def make(name: str, shape: tuple[int, ...], **options) -> Normalizer:
    """A normalizer (registry.NORMALIZERS) for inputs whose one example has `shape`."""
    return declared(name)(tuple(shape), **options)
