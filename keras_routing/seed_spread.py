"""What a recipe's ``[measured]`` seeds say about a CondConv model against its baseline.

A recipe may record the held-out accuracy of both models over several seeds::

    [measured]
    seeds = [0, 1, 2]
    baseline_accuracy = [0.8985, 0.9045, 0.8800]
    accuracy = [0.9015, 0.9240, 0.9235]

One run cannot tell a gain from seed-to-seed noise; these can. ``SeedSpread.from_recipe`` reads
them and ``verdict`` says, in one sentence with the numbers, whether the CondConv model's mean
gain exceeds the seed-to-seed standard deviation of either model.
"""

import dataclasses
import statistics


@dataclasses.dataclass(frozen=True)
class SeedSpread:
    seeds: tuple
    baseline: tuple  # held-out accuracy of the baseline, one per seed
    condconv: tuple  # and of the CondConv model

    @classmethod
    def from_recipe(cls, measured):
        """The spread in a recipe's ``[measured]`` section, or ``None`` where it records none."""
        keys = ("seeds", "baseline_accuracy", "accuracy")
        if not all(isinstance(measured.get(key), list) for key in keys):
            return None
        seeds, baseline, condconv = (tuple(measured[key]) for key in keys)
        if not len(seeds) == len(baseline) == len(condconv) >= 2:
            raise ValueError(
                f"[measured] needs one baseline_accuracy and one accuracy per seed (at least two seeds), "
                f"got {len(seeds)} seeds, {len(baseline)} and {len(condconv)} accuracies."
            )
        return cls(seeds, baseline, condconv)

    @staticmethod
    def summary(values):
        """``mean ± standard deviation`` in percent."""
        return f"{statistics.mean(values):.2%} ± {statistics.stdev(values) * 100:.2f}"

    @staticmethod
    def span(values):
        """``min-max`` in percent."""
        return f"{min(values):.2%}-{max(values):.2%}"

    def verdict(self):
        """One sentence: is the mean gain beyond the seed-to-seed spread?"""
        gains = [(c - b) * 100 for b, c in zip(self.baseline, self.condconv)]
        mean = statistics.mean(gains)
        spread = max(statistics.stdev(self.baseline), statistics.stdev(self.condconv)) * 100
        ahead = sum(gain > 0 for gain in gains)
        seeds = ", ".join(map(str, self.seeds))
        detail = (
            f"mean gain {mean:+.2f} points, {ahead} of {len(gains)} seeds ahead ({min(gains):+.2f} to "
            f"{max(gains):+.2f}), seed-to-seed standard deviation up to {spread:.2f} points"
        )
        if mean > spread:
            return f"Over seeds {seeds} CondConv beats its baseline by more than the seed-to-seed spread: {detail}."
        return f"Over seeds {seeds} CondConv's gain is within the seed-to-seed spread: {detail}."
