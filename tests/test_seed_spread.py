"""A recipe's recorded seeds and the verdict the demo prints from them, on numbers worked by hand."""

import pytest

from keras_routing.seed_spread import SeedSpread


def test_a_gain_beyond_the_spread_is_called_so():
    # gains +5 and +5 points; standard deviations 0.71 points each (sqrt(0.5)).
    spread = SeedSpread.from_recipe(
        {"seeds": [0, 1], "baseline_accuracy": [0.90, 0.91], "accuracy": [0.95, 0.96]}
    )
    assert (
        spread.summary(spread.baseline) == "90.50% ± 0.71" and spread.span(spread.baseline) == "90.00%-91.00%"
    )
    verdict = spread.verdict()
    assert "by more than the seed-to-seed spread" in verdict
    assert (
        "mean gain +5.00 points, 2 of 2 seeds ahead (+5.00 to +5.00)" in verdict
        and "up to 0.71 points" in verdict
    )


def test_a_gain_within_the_spread_is_called_so():
    # gains +4, -2: mean +1 point; the baseline's standard deviation is 2.83 points.
    spread = SeedSpread.from_recipe(
        {"seeds": [3, 4], "baseline_accuracy": [0.86, 0.90], "accuracy": [0.90, 0.88]}
    )
    verdict = spread.verdict()
    assert verdict.startswith("Over seeds 3, 4 CondConv's gain is within the seed-to-seed spread")
    assert (
        "mean gain +1.00 points, 1 of 2 seeds ahead (-2.00 to +4.00)" in verdict
        and "up to 2.83 points" in verdict
    )


def test_recipes_without_seeds_have_no_spread_and_bad_ones_are_refused():
    assert SeedSpread.from_recipe({}) is None
    assert SeedSpread.from_recipe({"accuracy": 0.9}) is None  # one run's figure, not a spread
    with pytest.raises(ValueError, match="one baseline_accuracy and one accuracy per seed"):
        SeedSpread.from_recipe({"seeds": [0, 1], "baseline_accuracy": [0.9], "accuracy": [0.9, 0.91]})
