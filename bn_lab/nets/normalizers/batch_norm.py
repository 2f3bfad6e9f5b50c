"""`batch_norm` (Ioffe & Szegedy 2015): per feature over the batch (and the spatial positions),
with population statistics for inference; its `backend` option is one of bn_lab.nets.bn's three
(registry.BN_BACKENDS), which compute the same function. Each kernel column's scale cancels.
`group_size` > 0 normalizes groups of that many examples of a training batch (ghost batches,
bn_lab.nets.bn.groups); 0, the default, the whole batch."""

from bn_lab import registry
from bn_lab.nets.normalizers import Normalizer


class BatchNorm(Normalizer):
    OPTIONS = {"backend": "keras", "momentum": 0.99, "epsilon": 1e-3, "group_size": 0}
    CHOICES = {"backend": registry.BN_BACKENDS}
    HAS_POPULATION_STATISTICS = True
    SCALE_INVARIANCE = "column"
    STATISTICS = ("population_mean", "population_variance")  # as weights.npz names them

    def __init__(
        self,
        shape: tuple[int, ...],
        backend: str = "keras",
        momentum: float = 0.99,
        epsilon: float = 1e-3,
        group_size: int = 0,
    ):
        from bn_lab.nets import bn

        self.group_size = group_size
        self.norm = bn.make(backend, shape[-1], len(shape) + 1, momentum, epsilon, group_size)
        self.gamma, self.beta = self.norm.gamma, self.norm.beta
        self.population_mean, self.population_variance = self.norm.population_mean, self.norm.population_variance
        self.population_statistics = [self.population_mean, self.population_variance]

    def exact_statistics(self, mean, variance) -> list:
        return [mean, variance]

    def __call__(self, x, training: bool, group_size: int | None = None):
        return self.norm(x, training, group_size)
