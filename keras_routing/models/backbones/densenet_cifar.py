"""The CIFAR DenseNets of Huang et al. (2017, "Densely connected convolutional networks"):
a 3x3 stem, three dense blocks joined by transition layers, and the classifier.

Each layer of a dense block adds ``growth_rate`` (k) channels to its input: with ``bottleneck``
(DenseNet-B) batch normalization, ReLU, a 1x1 convolution to 4k, batch normalization, ReLU, a
3x3 convolution to k; without, batch normalization, ReLU and the 3x3 convolution. The layers per
block are ``(depth - 4) / 6`` with bottlenecks, ``(depth - 4) / 3`` without (DenseNet-BC-100:
16). The stem has ``2k`` filters with bottlenecks (16 without). A transition is batch
normalization, ReLU, a 1x1 convolution to ``compression`` times the channels (DenseNet-C: 0.5)
and 2x2 average pooling. The head: batch normalization, ReLU, global average pooling and the
classifier ``predictions``.

Names follow ``keras.applications``' DenseNet: ``conv1_conv`` (the stem); the blocks ``conv2``
to ``conv4``, their layers ``conv{b}_block{n}`` (``_0_bn``, ``_0_relu``, ``_1_conv``,
``_1_bn``, ``_1_relu``, ``_2_conv``, joined by ``_concat``); transitions ``pool2``, ``pool3``
(``_bn``, ``_relu``, ``_conv``, ``_pool``); ``bn``, ``relu``, ``avg_pool``, ``predictions``.

Conditioner hooks: every convolution and the classifier through ``conv`` / ``dense``; each
dense layer through ``concat_block`` (role ``"dense_layer"``: a gate may mask it); the end of
dense blocks 1 and 2 through ``exit_point`` (role ``"exit"``, block ``exit1`` / ``exit2``),
given the rest of the network and the MSDNet-style intermediate classifier
(``intermediate_classifier``). ``Site.index``: 1 the stem, then the layers, transitions and
exits in order, the classifier last.
"""

import keras

from keras_routing.models.backbones.common import batch_norm, check_conditioner, dense_classifier, image_input
from keras_routing.models.conditioners import Site
from keras_routing.validation import integer, is_integer, number

BLOCKS = 3
CLASSIFIER_WIDTH = 128  # MSDNet's classifiers: two 3x3 convolutions of 128 filters


def layers_per_block(depth, bottleneck=True):
    """Layers per dense block of a CIFAR DenseNet of ``depth``: ``(depth - 4) / 6`` with
    bottlenecks (each layer two convolutions), ``(depth - 4) / 3`` without."""
    per = 6 if bottleneck else 3
    if not is_integer(depth) or depth < 4 + per or (depth - 4) % per:
        form = "6n + 4 (40, 100, 190, ...)" if bottleneck else "3n + 4 (40, 100, ...)"
        raise ValueError(f"`depth` of a CIFAR DenseNet must be {form}, got {depth!r}.")
    return (int(depth) - 4) // per


def intermediate_classifier(x, conditioner, classes, activation, *, width, name, index, stage, norm):
    """MSDNet's intermediate classifier (Huang et al. 2018, as the paper's [14]): two 3x3
    convolutions of ``width`` filters with stride 2, each with batch normalization and ReLU,
    2x2 average pooling (the whole map where smaller), flattening and the linear classifier
    ``<name>_predictions``."""
    block = Site("block", "exit_classifier", index, f"{name}_classifier", stage)
    sites = (block.layer("conv", "exit_classifier", 2), block.layer("conv", "exit_classifier", 2))
    conditioner.start_block(x, site=block.holding(*sites))
    for i, site in enumerate(sites, start=1):
        x = conditioner.conv(x, width, 3, name=f"{name}_{i}_conv", site=site, strides=2)
        x = batch_norm(x, f"{name}_{i}_bn", **norm)
        x = keras.layers.Activation("relu", name=f"{name}_{i}_relu")(x)
    pool = (min(2, x.shape[1]), min(2, x.shape[2]))
    x = keras.layers.AveragePooling2D(pool, name=f"{name}_pool")(x)
    x = keras.layers.Flatten(name=f"{name}_flatten")(x)
    head = Site("block", "classifier", index, f"{name}_predictions", stage)
    site = head.layer("dense", "classifier")
    conditioner.start_block(x, site=head.holding(site))
    return conditioner.dense(x, classes, name=f"{name}_predictions", site=site, activation=activation)


def densenet_cifar_backbone(
    *,
    depth=100,
    growth_rate=12,
    bottleneck=True,
    compression=0.5,
    conditioner=None,
    input_shape=(32, 32, 3),
    classes=10,
    classifier_activation="softmax",
    exit_classifier_width=CLASSIFIER_WIDTH,
    bn_momentum=0.9,
    name=None,
):
    """A CIFAR DenseNet (DenseNet-BC-100, k = 12, by default) whose convolutions, dense layers
    and exit points ``conditioner`` builds (default ``Plain``: no exits)."""
    per_block = layers_per_block(depth, bottleneck)
    k = integer(growth_rate, "growth_rate")
    if not isinstance(bottleneck, bool):
        raise ValueError(f"`bottleneck` must be True or False, got {bottleneck!r}.")  # noqa: TRY004 (the project's convention)
    theta = number(compression, "compression", above=0, at_most=1)
    classes = integer(classes, "classes")
    width = integer(exit_classifier_width, "exit_classifier_width")
    conditioner = check_conditioner(conditioner)
    norm = {"momentum": bn_momentum, "epsilon": 1e-5}
    counter = iter(range(1, 10**6))

    inputs = image_input(input_shape, default_size=32, min_size=8)
    stem = Site("block", "stem", next(counter), "conv1", stage=0)
    site = stem.layer("conv", "stem")
    conditioner.start_block(inputs, site=stem.holding(site))
    x = conditioner.conv(inputs, 2 * k if bottleneck else 16, 3, name="conv1_conv", site=site)

    def dense_layer(x, block, stage):
        name = block.block
        sites = ((block.layer("conv", "dense_bottleneck"),) if bottleneck else ()) + (
            block.layer("conv", "dense_3x3"),
        )
        block = block.holding(*sites)
        conditioner.start_block(x, site=block)

        def layer(h):
            h = batch_norm(h, f"{name}_0_bn", **norm)
            h = keras.layers.Activation("relu", name=f"{name}_0_relu")(h)
            if bottleneck:
                h = conditioner.conv(h, 4 * k, 1, name=f"{name}_1_conv", site=sites[0])
                h = batch_norm(h, f"{name}_1_bn", **norm)
                h = keras.layers.Activation("relu", name=f"{name}_1_relu")(h)
            return conditioner.conv(h, k, 3, name=f"{name}_2_conv", site=sites[-1])

        return conditioner.concat_block(x, layer, name=f"{name}_concat", site=block)

    def transition(x, stage):
        name = f"pool{stage + 2}"
        block = Site("block", "transition", next(counter), name, stage)
        site = block.layer("conv", "transition")
        conditioner.start_block(x, site=block.holding(site))
        x = batch_norm(x, f"{name}_bn", **norm)
        x = keras.layers.Activation("relu", name=f"{name}_relu")(x)
        x = conditioner.conv(x, int(theta * x.shape[-1]), 1, name=f"{name}_conv", site=site)
        return keras.layers.AveragePooling2D(2, name=f"{name}_pool")(x)

    def stage(x, s):
        """Dense block ``s`` (0-based) and everything after it."""
        for n in range(1, per_block + 1):
            block = Site("block", "dense_layer", next(counter), f"conv{s + 2}_block{n}", s)
            x = dense_layer(x, block, s)
        if s == BLOCKS - 1:
            x = batch_norm(x, "bn", **norm)
            x = keras.layers.Activation("relu", name="relu")(x)
            return dense_classifier(
                x, conditioner, classes, classifier_activation, 0.0, next(counter), s, pool_name="avg_pool"
            )
        exit_name = f"exit{s + 1}"
        exit_site = Site("block", "exit", next(counter), exit_name, s)
        return conditioner.exit_point(
            x,
            lambda h: stage(transition(h, s), s + 1),
            classifier=lambda h: intermediate_classifier(
                h,
                conditioner,
                classes,
                classifier_activation,
                width=width,
                name=exit_name,
                index=exit_site.index,
                stage=s,
                norm=norm,
            ),
            name=exit_name,
            site=exit_site,
        )

    return keras.Model(inputs, stage(x, 0), name=name or f"densenet{depth}_cifar")
