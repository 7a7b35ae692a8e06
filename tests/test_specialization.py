"""The routing paper's Fig. 4 aggregation against a literal count of expert choices."""

import numpy as np
import pytest

from keras_routing.specialization import expert_choices, plot_expert_choices

# Six examples, three experts, k = 2: class 0 chose {0, 1}, {0, 1}, {0, 2}; class 1 always {1, 2}.
WEIGHTS = np.array(
    [[0.6, 0.4, 0.0], [0.5, 0.5, 0.0], [0.7, 0.0, 0.3], [0.0, 0.2, 0.8], [0.0, 0.9, 0.1], [0.0, 0.5, 0.5]]
)
LABELS = np.array([0, 0, 0, 1, 1, 1])


def test_choices_per_class_and_per_expert_are_shares_of_the_counted_choices():
    choices = expert_choices(WEIGHTS, LABELS)
    assert choices.k == 2
    np.testing.assert_array_equal(choices.classes, [0, 1])
    # class 0 made 6 choices: expert 0 three times, expert 1 twice, expert 2 once
    np.testing.assert_allclose(choices.per_class, [[3 / 6, 2 / 6, 1 / 6], [0, 3 / 6, 3 / 6]])
    # expert 0 was chosen 3 times, all by class 0; expert 1 5 times (2 + 3); expert 2 4 times (1 + 3)
    np.testing.assert_allclose(choices.per_expert, [[1, 0], [2 / 5, 3 / 5], [1 / 4, 3 / 4]])
    # top-2 share: class 0 (3 + 2) / 6, class 1 all of it
    assert choices.concentration == pytest.approx((5 / 6 + 1) / 2)
    assert choices.uniform_concentration == pytest.approx(2 / 3)


def test_the_plot_is_a_png_and_bad_shapes_name_the_arguments(tmp_path):
    path = plot_expert_choices(expert_choices(WEIGHTS, LABELS), tmp_path / "fig4.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="weights"):
        expert_choices(WEIGHTS[:, 0], LABELS)
    with pytest.raises(ValueError, match="labels"):
        expert_choices(WEIGHTS, LABELS[:4])
