"""Keras's own layer harness (``keras.src.testing.TestCase.run_layer_test``) on every layer and
variant that ``tests/harness.py`` checks: an independent check of ours, written by Keras.

Run as Keras's test suite runs it: a ``TestCase``, set up (``clear_session``), then
``run_layer_test`` with the layer class, its init kwargs, the input shape (a dict of
``<argument>_shape`` for keyword inputs, passed as Keras passes them) and the expected output
shape and weight counts. Keras's harness differs from ours where this module adapts it:

- its training step calls the layer on one positional input without the call kwargs, so layers
  that need ``routing_weights=`` or a second input (``context=``) skip it (ours trains them);
- it passes ``routing_weights`` as an array in ``call_kwargs`` (its explicit ``build`` takes the
  input shapes as keyword arguments, which a layer built from one input shape does not);
- its mixed-precision check is ``mixed_float16`` (ours: ``mixed_bfloat16`` unless a variant asks),
  and it skips it on PyTorch without CUDA;
- it reuses one instance of an init-kwarg layer (``routing=Routing(...)``) in every layer it
  constructs, as a user who passes one router to several layers.

The configurations the issue's three defects came from are among the variants: a routing
config under a mixed policy, ``CondDense`` with a routing instance under ``mixed_float16``, the
dilated grouped paths trained through a generator (a ``None`` batch in TensorFlow's
``tf.function``), and the too-small input below.
"""

import numpy as np
import pytest

from keras.src.testing import TestCase

from keras_routing.layers import CondDepthwiseConv2D, Routing
from tests.layers.test_cond_conv import VARIANTS


def _keras_arguments(variant):
    """Keras's run_layer_test arguments for one of our variants."""
    arguments = {
        key: variant[key]
        for key in (
            "layer_cls",
            "init_kwargs",
            "expected_output_shape",
            "expected_num_trainable_weights",
            "expected_num_non_trainable_weights",
        )
    }
    arguments["expected_num_seed_generators"] = variant.get("expected_num_seed_generators", 0)
    arguments["expected_num_losses"] = variant.get("expected_num_losses", 0)
    call_kwargs = dict(variant.get("call_kwargs", {}))
    shape = variant["input_shape"]
    if isinstance(shape, dict):
        if variant["layer_cls"] is Routing:  # build(inputs_shape, context_shape), call(inputs, context)
            shape = {f"{key}_shape": value for key, value in shape.items()}
        else:
            weights_shape = shape["routing_weights"]
            call_kwargs["routing_weights"] = (
                np.random.default_rng(6).uniform(size=weights_shape).astype("float32")
            )
            shape = shape["inputs"]
    arguments["input_shape"] = shape
    arguments["call_kwargs"] = call_kwargs
    arguments["run_training_check"] = not call_kwargs and not isinstance(shape, dict)
    return arguments


def _run(**arguments):
    case = TestCase()
    case.setUp()
    case.run_layer_test(**arguments)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_keras_run_layer_test(name):
    _run(**_keras_arguments(VARIANTS[name]))


def test_keras_run_layer_test_rejects_an_input_too_small_for_the_kernel():
    """The issue's third defect, as Keras's harness meets it: a 5x5 kernel at stride 2 on a 4x4
    input has no output position; the layer says so, as Keras's Conv2D does."""
    with pytest.raises(ValueError, match="output size"):
        _run(
            layer_cls=CondDepthwiseConv2D,
            init_kwargs={"kernel_size": 5, "num_experts": 4, "strides": 2},
            input_shape=(2, 4, 4, 3),
            expected_output_shape=(2, 0, 0, 3),
            expected_num_trainable_weights=4,
            expected_num_non_trainable_weights=0,
        )
