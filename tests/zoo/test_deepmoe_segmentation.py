"""DeepMoE DRN-A-50 for segmentation: output stride 8 and DRN's dilations, the per-pixel loss
(eq. 7 without mu) and mean IoU against numpy, a fit step on (image, mask), Table 5's FLOPs."""

import keras
import numpy as np
import pytest

import keras_routing
from keras_routing.models.backbones.drn import drn_a_backbone
from keras_routing.zoo import DeepMoESegmentationTask, SegmentationTask, deepmoe_drn_a50, drn_a50
from keras_routing.zoo.deepmoe import _gate_outputs
from tests.reference import to_numpy

SMALL = (1, 1, 2, 2)  # one block per stage, two in stages 4 and 5: both dilations, few layers
SIZE, CLASSES = 32, 3


def _data(n=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, SIZE, SIZE, 3)).astype("float32")
    return x, rng.integers(0, CLASSES, size=(n, SIZE, SIZE))


def _mean_iou(y, predicted, classes):
    """Keras's mean IoU: TP / (TP + FP + FN) per class, averaged over classes that occur."""
    ious = []
    for c in range(classes):
        tp = np.sum((y == c) & (predicted == c))
        union = np.sum((y == c) | (predicted == c))
        if union:
            ious.append(tp / union)
    return float(np.mean(ious))


LAMBDA = 0.05


@pytest.fixture(scope="module")
def model():
    """The small DeepMoE DRN-A (variant A, wide), built once: every backend compiles each new
    weight shape, and JAX pays for it most."""
    return deepmoe_drn_a50(
        blocks=SMALL,
        input_shape=(SIZE, SIZE, 3),
        classes=CLASSES,
        gate_l1_weight=LAMBDA,
        embedding_dim=4,
        num_convs=2,
    )


def test_drn_a_keeps_output_stride_8_with_drns_dilations(model):
    """The stride-8 features of DRN-A (Yu et al.): stages 4 and 5 do not downsample; the 3x3 of
    their blocks after the first is dilated by 2 and 4 (DRN's code: the first has dilation 1),
    gated or not; the head upsamples to the input size. Variant A gates (2x wide) the 1x1
    reduction and the 3x3 of every block."""
    assert isinstance(model, DeepMoESegmentationTask)
    assert model.output.shape == (None, SIZE, SIZE, CLASSES)
    for name, channels in [("conv3_block1_out", 512), ("conv4_block2_out", 1024), ("conv5_block2_out", 2048)]:
        assert model.get_layer(name).output.shape == (None, SIZE // 8, SIZE // 8, channels)
    dilations = {
        "conv3_block1_2_conv": 1,
        "conv4_block1_2_conv": 1,
        "conv4_block2_2_conv": 2,
        "conv5_block1_2_conv": 1,
        "conv5_block2_2_conv": 4,
        "conv5_block2_1_conv": 1,  # a 1x1 is never dilated
    }
    for name, dilation in dilations.items():
        assert model.get_layer(name).dilation_rate == (dilation, dilation), name
    assert isinstance(model.get_layer("conv5_block2_2_conv"), keras_routing.layers.ChannelGate)
    assert model.get_layer("conv3_block1_2_conv").strides == (2, 2)  # DRN: the stride on the 3x3
    assert model.get_layer("conv4_block1_2_conv").strides == (1, 1)
    assert model.get_layer("conv4_block1_0_conv").strides == (1, 1)
    assert model.gate.gate_channels == [128, 128, 256, 256, 512, 512, 512, 512, 1024, 1024, 1024, 1024]
    with pytest.raises(ValueError, match="input_shape"):
        drn_a_backbone(blocks=SMALL, input_shape=(36, 36, 3))
    with pytest.raises(ValueError, match="blocks"):
        drn_a_backbone(blocks=(1, 1, 2))


def test_per_pixel_loss_mean_iou_and_a_fit_step(model):
    """One fit step on (image, mask): its loss is the mean per-pixel cross-entropy plus
    lambda * mean_batch sum_l ||g_l||_1 and its mean IoU Keras's definition, both by numpy from
    the outputs of the same forward pass (training mode, at the initial weights); the step
    trains and logs the gates' statistics."""
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    x, y = _data()
    probe = keras.Model(model.inputs, [model.output, *_gate_outputs(model)])
    probabilities, *gates = (to_numpy(t) for t in probe(x, training=True))
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)
    picked = np.take_along_axis(probabilities, y[..., None], axis=-1)[..., 0]
    l1 = np.mean(sum(np.abs(g).sum(axis=1) for g in gates))
    expected_loss = np.mean(-np.log(np.clip(picked, 1e-7, 1))) + LAMBDA * l1

    before = to_numpy(model.get_layer("seg").kernel).copy()
    history = model.fit(x, y, batch_size=len(x), epochs=1, verbose=0).history
    np.testing.assert_allclose(history["loss"][0], expected_loss, rtol=1e-4)
    expected_iou = _mean_iou(y, probabilities.argmax(-1), CLASSES)
    np.testing.assert_allclose(history["mean_iou"][0], expected_iou, atol=2e-3)
    assert 0.0 <= history["conv5_block2_2_conv_zero_fraction"][0] <= 1.0
    assert np.abs(to_numpy(model.get_layer("seg").kernel) - before).max() > 0


def test_variant_b_and_the_plain_baseline():
    """Variant B gates the 3x3s only; the baseline is the same network without the gates (the
    narrow model's weights less the gate's), a SegmentationTask with the same defaults."""
    small = {"blocks": SMALL, "input_shape": (SIZE, SIZE, 3), "classes": CLASSES}
    b = deepmoe_drn_a50(variant="b", wide=False, embedding_dim=4, num_convs=2, **small)
    assert b.gate.gate_channels == [64, 128, 256, 256, 512, 512]
    assert not isinstance(b.get_layer("conv2_block1_2_conv"), keras_routing.layers.ChannelGate)
    assert isinstance(b.get_layer("conv2_block1_3_conv"), keras_routing.layers.ChannelGate)
    plain = drn_a50(**small)
    assert isinstance(plain, SegmentationTask) and plain.output.shape == (None, SIZE, SIZE, CLASSES)

    def trainable(layer):
        return sum(int(np.prod(w.shape)) for w in layer.trainable_weights)

    assert trainable(b) - trainable(b.gate) == trainable(plain)
    with pytest.raises(ValueError, match="variant"):
        deepmoe_drn_a50(variant="C", **small)


# Table 5's FLOPs (x 1e9) of the two plain rows at CityScapes' 1024x2048.
TABLE_5 = {"drn_a50": 703, "wide_drn_a50": 2173}


def _drn_a50_madds(height, width, widen=1, shortcuts=True):
    """DRN-A-50's multiply-adds, layer by layer from the architecture: k * k * c_in * c_out per
    output position; ``widen`` doubles the 1x1 reductions and 3x3s (the wide baseline)."""
    h, w = height // 2, width // 2
    total = 7 * 7 * 3 * 64 * h * w
    h, w = h // 2, w // 2
    channels = 64
    for stage, (filters, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)), start=2):
        for block in range(blocks):
            stride = 2 if stage == 3 and block == 0 else 1
            inner = filters * widen
            out_h, out_w = h // stride, w // stride
            total += channels * inner * h * w  # 1x1 reduction (the stride is on the 3x3)
            total += 9 * inner * inner * out_h * out_w
            total += inner * 4 * filters * out_h * out_w
            if block == 0 and shortcuts:
                total += channels * 4 * filters * out_h * out_w
            channels, h, w = 4 * filters, out_h, out_w
    return total + channels * 19 * h * w  # the 1x1 head


@pytest.mark.slow
def test_table_5_flops_of_drn_a50_at_cityscapes_size():
    """At 1024x2048 the profile is the layer-by-layer count; Table 5's 703 and 2173 (x 1e9) match
    it within 0.6% without the four projection shortcuts (92.3e9 multiply-adds, which the paper's
    counter evidently left out), and are 12% and 4% below it with them."""
    size = (1024, 2048)
    for wide, key in ((False, "drn_a50"), (True, "wide_drn_a50")):
        report = keras_routing.profile(drn_a50(wide=wide, input_shape=(*size, 3)))
        widen = 2 if wide else 1
        assert report.madds == _drn_a50_madds(*size, widen)
        without = _drn_a50_madds(*size, widen, shortcuts=False)
        assert abs(without - TABLE_5[key] * 1e9) / (TABLE_5[key] * 1e9) < 0.006, (key, without)
    full = deepmoe_drn_a50(input_shape=(512, 512, 3))
    assert len(full.gate.gate_channels) == 32 and full.output.shape == (None, 512, 512, 19)
