"""`noisy_bn` (Santurkar et al. 2018, arXiv 1805.11604, §2.1): batch_norm followed, in training mode
only, by noise whose distribution changes at every step, so that each layer's inputs move *more*
than without BN ("internal covariate shift" made worse on purpose).

The paper's noise, its Appendix A.2.1, Algorithm 1 (`noise: algorithm1`, the default): "for each
layer and each unit i, at each time step t: sample μ_t^i ~ U(−n_μ, n_μ), σ_t^i ~ U(1, n_σ); for
each sample j: m_t^{i,j} ~ U(μ_t^i − r_μ, μ_t^i + r_μ), s_t^{i,j} ~ N(σ_t^i, r_σ);
a^{i,j} ← s_t^{i,j} · a^{i,j} + m_t^{i,j}", with n_μ = 0.5, n_σ = 1.25, r_μ = r_σ = 0.1 (their
VGG; for convolutions "the height and width dimensions are treated as batch dimensions": one draw
per sample *and* position, the distribution per channel). The options are the paper's symbols:
n_mu, n_sigma, r_mu, r_sigma.

`noise: gaussian` is the noise bn_lab used before it followed Algorithm 1, kept to compare: per
activation y = x · m + a, m ~ N(μ_m, σ_m²), a ~ N(μ_a, σ_a²), the distribution re-drawn per unit
at every step, μ_a ~ U(−shift, shift), μ_m ~ U(1, scale), σ_a, σ_m ~ U(0, spread) (defaults 0.5,
1.5, 0.5: stronger than the paper's, and its spreads random).

Inference mode adds no noise, and the exact-statistics pass adds none either (inference will not
see it). The draws are stateless, from (the run's seed, the arm's *name*, the layer, the step):
a run is reproducible, and an arm draws the same noise wherever it stands in `arms:`. The step
count is a population statistic, so a check in training mode leaves it as it was. (XLA's
stateless generator draws other numbers than TensorFlow's kernels from the same seed: a run with
train.jit_compile on, the MLP's default, is reproducible, and so is one with it off, but the two
draw different noise.) With n_mu 0, n_sigma 1, r_mu 0, r_sigma 0 (gaussian: shift 0, scale 1,
spread 0) the noise is s = 1, m = 0: exactly batch_norm.
"""

import hashlib

from bn_lab.nets.normalizers.batch_norm import BatchNorm

NOISES = ("algorithm1", "gaussian")


def stream_key(run_seed: int, arm: str, layer: int, draw: str) -> int:
    """A 63-bit key of one stream of draws, from what identifies it (not from the arm's position)."""
    digest = hashlib.sha256(f"{run_seed}/{arm}/{layer}/{draw}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class NoisyBN(BatchNorm):
    OPTIONS = {
        **BatchNorm.OPTIONS,
        "noise": "algorithm1",
        "n_mu": 0.5,
        "n_sigma": 1.25,
        "r_mu": 0.1,
        "r_sigma": 0.1,
        "shift": 0.5,
        "scale": 1.5,
        "spread": 0.5,
    }
    CHOICES = {**BatchNorm.CHOICES, "noise": NOISES}
    STATISTICS = (*BatchNorm.STATISTICS, "steps")
    SEEDED = True

    @classmethod
    def problem(cls, shape: tuple[int, ...], options: dict) -> str | None:
        given = {**cls.OPTIONS, **options}
        if min(given["n_mu"], given["r_mu"], given["r_sigma"]) < 0 or given["n_sigma"] < 1:
            return "needs n_mu, r_mu, r_sigma >= 0 and n_sigma >= 1"
        if given["shift"] < 0 or given["spread"] < 0 or given["scale"] < 1:
            return "needs shift >= 0, scale >= 1 and spread >= 0"
        return super().problem(shape, given)

    def __init__(
        self,
        shape: tuple[int, ...],
        noise: str = "algorithm1",
        n_mu: float = 0.5,
        n_sigma: float = 1.25,
        r_mu: float = 0.1,
        r_sigma: float = 0.1,
        shift: float = 0.5,
        scale: float = 1.5,
        spread: float = 0.5,
        seed: tuple = (0, "", 0),
        **batch_norm_options,  # batch_norm's: backend, momentum, epsilon, group_size
    ):
        """seed: (the run's seed, the arm's name, the layer)."""
        import tensorflow as tf

        super().__init__(shape, **batch_norm_options)
        self.kind = noise
        self.n_mu, self.n_sigma, self.r_mu, self.r_sigma = n_mu, n_sigma, r_mu, r_sigma
        self.shift, self.scale, self.spread = shift, scale, spread
        # One key per kind of draw: the per-unit distribution, the per-activation values.
        self.keys = {draw: stream_key(*seed, draw) for draw in ("distribution", "offset", "multiplier")}
        self.steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="steps")  # training-mode calls so far
        self.population_statistics = [*self.population_statistics, self.steps]

    def exact_statistics(self, mean, variance) -> list:
        return [mean, variance, None]  # None: the step count stays

    def _seed(self, draw: str):
        import tensorflow as tf

        return tf.stack([tf.constant(self.keys[draw], tf.int64), self.steps])

    def noise(self, shape):
        """(multiplier, offset) of this step, shaped as the input: y = x · multiplier + offset."""
        import tensorflow as tf

        units = shape[-1:]
        u = tf.random.stateless_uniform(tf.concat([[4], units], 0), self._seed("distribution"))
        if self.kind == "gaussian":
            mean_a, mean_m = (2 * u[0] - 1) * self.shift, 1 + u[1] * (self.scale - 1)
            spread_a, spread_m = u[2] * self.spread, u[3] * self.spread
            z_a = tf.random.stateless_normal(shape, self._seed("offset"))
            z_m = tf.random.stateless_normal(shape, self._seed("multiplier"))
            return mean_m + spread_m * z_m, mean_a + spread_a * z_a
        mu = (2 * u[0] - 1) * self.n_mu  # U(−n_μ, n_μ), per unit
        sigma = 1 + u[1] * (self.n_sigma - 1)  # U(1, n_σ), per unit
        m = mu + (2 * tf.random.stateless_uniform(shape, self._seed("offset")) - 1) * self.r_mu  # U(μ ± r_μ)
        s = sigma + self.r_sigma * tf.random.stateless_normal(shape, self._seed("multiplier"))  # N(σ, r_σ)
        return s, m

    def __call__(self, x, training: bool, group_size: int | None = None):
        import tensorflow as tf

        y = super().__call__(x, training, group_size)
        if not training:
            return y
        multiplier, offset = self.noise(tf.shape(y))
        self.steps.assign_add(1)
        return y * multiplier + offset

    def for_exact_statistics(self, x, group_size: int | None = None):
        """BN's training mode without the noise: inference, which exact statistics stand in for, has none."""
        return super().__call__(x, True, group_size)
