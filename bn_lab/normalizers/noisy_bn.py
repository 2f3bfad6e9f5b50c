"""`noisy_bn` (Santurkar et al. 2018, §2.1): batch_norm followed, in training mode only, by noise
whose distribution changes at every step, so that each layer's inputs move *more* than without
BN ("internal covariate shift" made worse on purpose).

bn_lab's choice (the paper gives the idea, not one formula we could follow): after BN, every
activation (each example, position and feature) becomes

    y = x · m + a,   m ~ N(μ_m, σ_m²),   a ~ N(μ_a, σ_a²),  drawn per activation,

where the distribution is re-drawn per feature at every training step:
μ_a ~ U(−shift, shift), μ_m ~ U(1, scale), σ_a, σ_m ~ U(0, spread). So the noise has a non-zero
mean and a non-unit variance, both changing every step. Inference mode adds no noise. The draws
are stateless, from (the run's seed, the arm, the layer, the step), so a run is reproducible;
the step count is a population statistic, so a check in training mode leaves it as it was.
(XLA's stateless generator draws other numbers than TensorFlow's kernels from the same seed: a
run with train.jit_compile on, the MLP's default, is reproducible, and so is one with it off,
but the two draw different noise.)
With shift 0, scale 1 and spread 0 the noise is m = 1, a = 0: exactly batch_norm.
"""

from bn_lab.normalizers.batch_norm import BatchNorm


class NoisyBN(BatchNorm):
    OPTIONS = {**BatchNorm.OPTIONS, "shift": 0.5, "scale": 1.5, "spread": 0.5}
    STATISTICS = (*BatchNorm.STATISTICS, "steps")
    SEEDED = True

    @classmethod
    def problem(cls, shape: tuple[int, ...], options: dict) -> str | None:
        given = {**cls.OPTIONS, **options}
        if given["shift"] < 0 or given["spread"] < 0 or given["scale"] < 1:
            return "needs shift >= 0, scale >= 1 and spread >= 0"
        return super().problem(shape, given)

    def __init__(
        self,
        shape: tuple[int, ...],
        shift: float = 0.5,
        scale: float = 1.5,
        spread: float = 0.5,
        seed: tuple[int, ...] = (0, 0, 0),
        **batch_norm_options,  # batch_norm's: backend, momentum, epsilon, group_size
    ):
        import tensorflow as tf

        super().__init__(shape, **batch_norm_options)
        self.shift, self.scale, self.spread = shift, scale, spread
        run_seed, arm, layer = seed
        self.seed = (int(run_seed), (int(arm) * 1000 + int(layer)) << 24)  # the step is added to the second
        self.steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="steps")  # training-mode calls so far
        self.population_statistics = [*self.population_statistics, self.steps]

    def exact_statistics(self, mean, variance) -> list:
        return [mean, variance, None]  # None: the step count stays

    def noise(self, shape):
        """(m, a) of this step, shaped as the input, drawn from this step's distribution."""
        import tensorflow as tf

        stream = (
            tf.constant(self.seed[1], tf.int64) + self.steps
        )  # the distribution's draws and the activations' draws: two seeds
        u = tf.random.stateless_uniform(
            tf.concat([[4], shape[-1:]], 0), tf.stack([tf.constant(2 * self.seed[0], tf.int64), stream])
        )
        mean_a = (2 * u[0] - 1) * self.shift
        mean_m = 1 + u[1] * (self.scale - 1)
        spread_a, spread_m = u[2] * self.spread, u[3] * self.spread
        z = tf.random.stateless_normal(
            tf.concat([[2], shape], 0), tf.stack([tf.constant(2 * self.seed[0] + 1, tf.int64), stream])
        )
        return mean_m + spread_m * z[0], mean_a + spread_a * z[1]

    def __call__(self, x, training: bool, group_size: int | None = None):
        import tensorflow as tf

        y = super().__call__(x, training, group_size)
        if not training:
            return y
        m, a = self.noise(tf.shape(y))
        self.steps.assign_add(1)
        return y * m + a
