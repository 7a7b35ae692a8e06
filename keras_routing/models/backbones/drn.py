"""The dilated residual network DRN-A (Yu, Koltun and Funkhouser, "Dilated Residual Networks",
2017) with its segmentation head: a bottleneck ResNet whose stages 4 and 5 keep stride 1 and
dilate their 3x3 convolutions by 2 and 4, so the features stay at output stride 8.

The blocks are ``resnet.py``'s bottlenecks, built through the same conditioner ``Site`` calls;
a dilated block's ``Site`` carries its ``dilation``, which the conditioner gives its 3x3. As in
DRN's code, the first block of stages 4 and 5 (the one that downsampled in the ResNet) has
stride 1 and dilation 1; the blocks after it have dilation 2 (stage 4) and 4 (stage 5); the
stride of stage 3 sits on the 3x3 (``stride_on="3x3"``, torchvision's and DRN's ResNet).
Layer names and ``Site.stage`` follow the ResNet (``conv4_block2_2_conv``): stage 4 and 5 run at
output stride 8, not 16 and 32.

The segmentation head (DRN's ``DRNSeg``): a 1x1 convolution to the classes (``seg``), bilinear
upsampling by 8 to the input size (``up``; DRN uses a fixed bilinear transposed convolution, the
same interpolation but for the border rows) and a per-pixel softmax (``predictions``).
"""

import keras

from keras_routing.models.backbones.common import check_arguments, check_conditioner, image_input
from keras_routing.models.backbones.resnet import BLOCKS, FILTERS, STRIDE_ON, _bottleneck, stem
from keras_routing.models.conditioners import Site
from keras_routing.validation import is_integer

OUTPUT_STRIDE = 8
DILATION = {4: 2, 5: 4}  # stage: dilation of its blocks after the first


def block_dilation(stage, block_number):
    """The dilation of the 3x3 of block ``block_number`` (from 1) of ``stage`` in DRN-A."""
    return DILATION.get(stage, 1) if block_number > 1 else 1


def _check_blocks(depth, blocks):
    if blocks is None:
        if not is_integer(depth) or depth not in BLOCKS:
            raise ValueError(f"`depth` must be one of {tuple(BLOCKS)}, got {depth!r}.")
        return BLOCKS[int(depth)]
    if (
        not isinstance(blocks, (tuple, list))
        or len(blocks) != 4
        or not all(is_integer(b) and b >= 1 for b in blocks)
    ):
        raise ValueError(f"`blocks` must be 4 integers >= 1 (blocks of stages 2-5), got {blocks!r}.")
    return tuple(int(b) for b in blocks)


def _check_size(input_shape):
    for size in (input_shape or (None, None))[:2]:
        if size is not None and is_integer(size) and size % OUTPUT_STRIDE:
            raise ValueError(
                f"`input_shape` must have a height and width divisible by {OUTPUT_STRIDE} (the output "
                f"stride, so the upsampled prediction has the input's size), got {tuple(input_shape)}."
            )


def drn_a_backbone(
    *,
    depth=50,
    blocks=None,
    conditioner=None,
    include_top=True,
    input_shape=None,
    classes=19,
    classifier_activation="softmax",
    stride_on="3x3",
    bn_momentum=0.9,
    name=None,
):
    """DRN-A of ``depth`` 50 (or 101, 152) whose conditioned layers ``conditioner`` builds
    (default ``Plain``). ``blocks``: the blocks of stages 2-5 instead of the depth's (ResNet-50:
    ``(3, 4, 6, 3)``); ``(1, 1, 2, 2)`` is the smallest with both dilations, for tests.

    ``include_top``: the segmentation head, giving ``(batch, height, width, classes)`` per-pixel
    probabilities (``classifier_activation``, None for logits); without it the stride-8 features
    ``(batch, height / 8, width / 8, 2048)``. ``input_shape``: default ``(512, 512, 3)``; height
    and width must be divisible by 8. ``classes``: default 19 (CityScapes, the paper's dataset).
    """
    stage_blocks = _check_blocks(depth, blocks)
    check_arguments(pooling=None, classes=classes, dropout=0.0, bn_momentum=bn_momentum)
    if stride_on not in STRIDE_ON:
        raise ValueError(f"`stride_on` must be one of {STRIDE_ON}, got {stride_on!r}.")
    conditioner = check_conditioner(conditioner)
    norm = {"momentum": bn_momentum, "epsilon": 1.001e-5}

    inputs = image_input(input_shape, default_size=512)
    _check_size(tuple(inputs.shape[1:]))
    x = stem(inputs, conditioner, norm)  # resnet_backbone's (keras.applications' names)

    index = 1
    dilated = {}  # the 3x3 of each block: its dilation, checked once built
    for stage, (filters, count) in enumerate(zip(FILTERS, stage_blocks), start=2):
        for block_number in range(1, count + 1):
            index += 1
            stride = 2 if block_number == 1 and stage == 3 else 1
            dilation = block_dilation(stage, block_number)
            block = Site(
                "block",
                "bottleneck",
                index,
                f"conv{stage}_block{block_number}",
                stage,
                stride,
                dilation=dilation,
            )
            dilated[f"{block.block}_2_conv"] = dilation
            projection = block_number == 1  # every stage's first block changes the channels
            x = _bottleneck(conditioner, x, filters, stride, projection, block, stride_on, norm)

    if include_top:
        head = Site("block", "segmentation_head", index + 1, "seg", 5)
        site = head.layer("conv", "segmentation_head")
        conditioner.start_block(x, site=head.holding(site))
        x = conditioner.conv(x, classes, 1, name="seg", site=site, use_bias=True)
        x = keras.layers.UpSampling2D(OUTPUT_STRIDE, interpolation="bilinear", name="up")(x)
        if classifier_activation is not None:
            x = keras.layers.Activation(classifier_activation, name="predictions")(x)
    model = keras.Model(inputs, x, name=name or (f"drn_a{depth}" if blocks is None else "drn_a"))
    _check_dilations(model, dilated, conditioner)
    return model


def _check_dilations(model, dilated, conditioner):
    # A conditioner that builds its own convolutions must honour Site.dilation; one that does not
    # would give a ResNet at the wrong receptive field without a word.
    for layer_name, dilation in dilated.items():
        layer = model.get_layer(layer_name)
        if tuple(getattr(layer, "dilation_rate", (1, 1))) != (dilation, dilation):
            raise ValueError(
                f"`conditioner` {type(conditioner).__name__} built '{layer_name}' with dilation "
                f"{getattr(layer, 'dilation_rate', None)}, DRN needs {dilation}: it must pass "
                "`Site.dilation` to the convolutions it builds."
            )
