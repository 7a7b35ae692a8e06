"""L2 weight decay on kernels, the convention of the TF-slim and TPU reference ImageNet models.

    penalised = add_kernel_l2(model, 4e-5)   # loss += 4e-5 / 2 * sum of squared kernel entries

Keras 3's optimizer ``weight_decay=`` is another thing: a decoupled decay, scaled by the
learning rate, of every trainable variable (batch-norm scales and offsets, biases and routing
parameters included). The reference MobileNets (whose 4e-5 the CondConv paper's setup follows
through Kornblith et al.) add ``weight_decay * tf.nn.l2_loss(w)`` = ``weight_decay / 2 *
sum(w ** 2)`` for the convolution and dense kernels to the loss instead, which is what this does.
"""

import keras

# The names Keras's Conv*, DepthwiseConv2D, SeparableConv2D and Dense give their kernels, and
# the stacked experts' kernels of keras_routing's layers (layers/experts.py) too.
KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel")


def kernels(model):
    """The trainable kernel variables of ``model``: every convolution, depthwise convolution and
    dense kernel, the experts' stacked kernels and the routing functions' dense kernels included;
    biases, batch-norm parameters and any other variables not."""
    return [v for v in model.trainable_weights if v.name in KERNEL_NAMES]


def add_kernel_l2(model, l2):
    """Add ``l2 / 2 * sum(w ** 2)`` for every kernel ``w`` of ``model`` (``kernels``) to its
    losses (``model.losses``, which ``fit`` adds to the loss on every backend); returns the
    kernels penalised. ``l2`` 0 removes the penalty. A variable's regularizer is not saved with
    the model: apply it again to a model loaded to train further."""
    if isinstance(l2, bool) or not isinstance(l2, (int, float)) or l2 < 0:
        raise ValueError(f"`l2` must be a number >= 0, got {l2!r}.")
    penalised = kernels(model)
    regularizer = keras.regularizers.L2(l2 / 2) if l2 else None  # Keras's L2(c) is c * sum(w ** 2)
    for variable in penalised:
        variable.regularizer = regularizer
    return penalised
