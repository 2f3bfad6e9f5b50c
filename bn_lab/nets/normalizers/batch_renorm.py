"""`batch_renorm` (Ioffe 2017, arXiv 1702.03275), written out.

Training mode normalizes with the batch's mean μ_B and σ_B = sqrt(var_B + ε), then corrects
towards the population statistics (μ, σ):

    x̂ = (x − μ_B) / σ_B · r + d,   r = clip(σ_B / σ, 1/r_max, r_max),   d = clip((μ_B − μ) / σ, −d_max, d_max)

with r and d constants for the gradient, and updates μ and σ by moving averages (of σ_B, as
the paper does, not of the variance). Inference mode is (x − μ) / σ. r_max and d_max start at
1 and 0 (plain BN) and grow linearly to their limits between steps `relax_from` and
`relax_to` (the paper: r_max 3 and d_max 5 over tens of thousands of steps); the step count is
one of the population statistics, so a check in training mode leaves it as it was.
Keras' BatchNormalization(renorm=True) with renorm_momentum = momentum is the same function
(tests/test_normalizers.py); this one is written out for its schedule and its readable steps.
With `group_size` > 0 each group of that many examples has its own μ_B, σ_B, r and d (ghost
batches, bn_lab.nets.bn.groups), and the moving averages take the groups' average.

Exact statistics: the layers above must see their inputs as inference will make them, normalized
by population statistics, not by the moving averages that training mode's r and d correct
towards (the very statistics exact ones replace). So the exact-statistics pass runs every layer
with r = 1, d = 0 (for_exact_statistics): BN's training mode, fvcore's precise_bn pass, which
estimates each layer's population moments from the layers below normalized by their batch
moments (tests/test_precise_bn.py checks it against numpy).
"""

from bn_lab.nets.normalizers import Normalizer


class BatchRenorm(Normalizer):
    OPTIONS = {
        "r_max": 3.0,
        "d_max": 5.0,
        "relax_from": 0,
        "relax_to": 0,
        "momentum": 0.99,
        "epsilon": 1e-3,
        "group_size": 0,
    }
    HAS_POPULATION_STATISTICS = True
    SCALE_INVARIANCE = "column"
    STATISTICS = (
        "population_mean",
        "population_stddev",
        "steps",
    )  # the names of population_statistics, as weights.npz has them

    @classmethod
    def problem(cls, shape: tuple[int, ...], options: dict) -> str | None:
        given = {**cls.OPTIONS, **options}
        if given["r_max"] < 1 or given["d_max"] < 0:
            return "needs r_max >= 1 and d_max >= 0"
        if not 0 <= given["relax_from"] <= given["relax_to"] or given["relax_from"] == given["relax_to"] != 0:
            return "needs 0 <= relax_from < relax_to (or both 0: the limits from the first step)"
        return super().problem(shape, given)

    def __init__(
        self,
        shape: tuple[int, ...],
        r_max: float = 3.0,
        d_max: float = 5.0,
        relax_from: int = 0,
        relax_to: int = 0,
        momentum: float = 0.99,
        epsilon: float = 1e-3,
        group_size: int = 0,
    ):
        import tensorflow as tf

        features = shape[-1]
        self.axes = list(range(len(shape)))  # the batch and every spatial axis: per feature
        self.r_max, self.d_max, self.momentum, self.epsilon = r_max, d_max, momentum, epsilon
        self.relax_from, self.relax_to = relax_from, relax_to
        self.group_size = group_size
        self.gamma = tf.Variable(tf.ones([features]), name="gamma")
        self.beta = tf.Variable(tf.zeros([features]), name="beta")
        self.population_mean = tf.Variable(tf.zeros([features]), trainable=False, name="population_mean")
        self.population_stddev = tf.Variable(tf.ones([features]), trainable=False, name="population_stddev")
        self.steps = tf.Variable(0.0, trainable=False, name="steps")  # training-mode calls so far
        self.population_statistics = [self.population_mean, self.population_stddev, self.steps]

    def exact_statistics(self, mean, variance) -> list:
        import tensorflow as tf

        return [mean, tf.sqrt(variance + self.epsilon), None]  # None: the schedule's step stays

    def limits(self):
        """(r_max, d_max) at this step of the schedule."""
        import tensorflow as tf

        span = max(self.relax_to - self.relax_from, 1)
        ramp = tf.clip_by_value((self.steps - self.relax_from) / span, 0.0, 1.0)
        if self.relax_to <= self.relax_from:
            ramp = tf.ones_like(ramp)
        return 1.0 + (self.r_max - 1.0) * ramp, self.d_max * ramp

    def _grouped_moments(self, x, group_size: int | None):
        """(inputs, found groups or None, mean, stddev): the batch's (or each group's) moments."""
        import tensorflow as tf

        from bn_lab.nets.bn import groups

        found = groups.split(x, self.group_size if group_size is None else group_size)
        if found is None:
            inputs, axes, keepdims = x, self.axes, False
        else:  # each group's statistics: (groups, 1, ..., features)
            (inputs, axes), keepdims = found, True
        mean, variance = tf.nn.moments(inputs, axes, keepdims=keepdims)
        return inputs, found, mean, tf.sqrt(variance + self.epsilon)

    def for_exact_statistics(self, x, group_size: int | None = None):
        """(x − μ_B) / σ_B · γ + β: training mode with r = 1, d = 0, so that the layers above see inputs
        normalized as inference will normalize them (by population statistics, here estimated
        by the batch's), not corrected towards the moving averages exact statistics replace."""
        from bn_lab.nets.bn import groups

        inputs, found, mean, stddev = self._grouped_moments(x, group_size)
        normalized = (inputs - mean) / stddev * self.gamma + self.beta
        return normalized if found is None else groups.merge(normalized, x)

    def __call__(self, x, training: bool, group_size: int | None = None):
        import tensorflow as tf

        from bn_lab.nets.bn import groups

        if not training:
            return (x - self.population_mean) / self.population_stddev * self.gamma + self.beta
        inputs, found, mean, stddev = self._grouped_moments(x, group_size)
        r_max, d_max = self.limits()
        r = tf.stop_gradient(tf.clip_by_value(stddev / self.population_stddev, 1.0 / r_max, r_max))
        d = tf.stop_gradient(tf.clip_by_value((mean - self.population_mean) / self.population_stddev, -d_max, d_max))
        batch_mean, batch_stddev = (
            (mean, stddev) if found is None else (groups.over_groups(mean), groups.over_groups(stddev))
        )
        self.population_mean.assign(self.population_mean * self.momentum + batch_mean * (1 - self.momentum))
        self.population_stddev.assign(self.population_stddev * self.momentum + batch_stddev * (1 - self.momentum))
        self.steps.assign_add(1.0)
        normalized = ((inputs - mean) / stddev * r + d) * self.gamma + self.beta
        return normalized if found is None else groups.merge(normalized, x)
