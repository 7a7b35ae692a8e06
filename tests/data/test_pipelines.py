"""The TFDS pipelines: the real tfds code path on mocked bytes, and the embedded dataset."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import keras

from keras_routing.data import image_classification, load_digits, normalize, object_detection, pipelines
from tests.seeds import record

# (name, split, channels in the TFDS features, classes)
CLASSIFICATION = [
    ("mnist", "train", 1, 10),
    ("cifar10", "train", 3, 10),
    ("cifar100", "test", 3, 100),
    ("imagenet2012", "validation", 3, 1000),
    ("omniglot", "train", 3, 1623),
]


def batches(dataset):
    return [(np.asarray(x), np.asarray(y)) for x, y in dataset]


@pytest.mark.parametrize("name, split, channels, classes", CLASSIFICATION)
def test_mocked_datasets_give_model_ready_batches(name, split, channels, classes):
    with tfds.testing.mock_data(num_examples=10):
        x, y = next(iter(image_classification(name, split, image_size=(40, 24), batch_size=4)))
    x, y = np.asarray(x), np.asarray(y)
    assert x.shape == (4, 40, 24, 3) and x.dtype == np.float32  # grey datasets become RGB too
    assert -1.0 <= x.min() and x.max() <= 1.0  # MobileNet's [-1, 1]
    assert y.shape == (4,) and y.dtype == np.int64 and ((0 <= y) & (y < classes)).all()


def test_normalisation_matches_keras_applications():
    images = np.random.default_rng(0).uniform(0, 255, (2, 5, 5, 3)).astype("float32")
    mobilenet = keras.applications.mobilenet.preprocess_input(images.copy())
    caffe = keras.applications.resnet50.preprocess_input(images.copy())
    np.testing.assert_allclose(normalize(tf.constant(images), "mobilenet"), mobilenet, atol=1e-5)
    np.testing.assert_allclose(normalize(tf.constant(images), "caffe"), caffe, atol=1e-4)
    np.testing.assert_allclose(normalize(tf.constant(images), "unit"), images / 255.0, atol=1e-6)


def test_embedded_digits_load_through_tfds_offline(digits_dir):
    ds, info = tfds.load("embedded_digits", split="test", data_dir=digits_dir, with_info=True)
    assert info.splits["train"].num_examples == 8000 and info.splits["test"].num_examples == 2000
    images = np.stack([np.asarray(e["image"]) for e in ds])
    labels = np.array([int(e["label"]) for e in ds])
    _, (x_test, y_test) = load_digits()
    # The same held-out digits as the arrays (TFDS stores them in its own order).
    assert sorted(map(bytes, images)) == sorted(map(bytes, x_test))
    np.testing.assert_array_equal(np.bincount(labels), np.bincount(y_test))


def test_digits_pipeline_grey_and_rgb(digits_dir):
    common = dict(split="test", batch_size=500, data_dir=digits_dir, shuffle=False)
    grey = batches(
        image_classification("embedded_digits", image_size=28, channels=1, preprocessing="raw", **common)
    )
    rgb = batches(
        image_classification("embedded_digits", image_size=28, channels=3, preprocessing="unit", **common)
    )
    assert [x.shape for x, _ in grey] == [(500, 28, 28, 1)] * 4
    np.testing.assert_allclose(rgb[0][0], np.repeat(grey[0][0], 3, axis=-1) / 255.0, atol=1e-6)
    np.testing.assert_array_equal(rgb[0][1], grey[0][1])


def test_each_epoch_is_a_seeded_permutation(digits_dir):
    def order(seed):
        ds = image_classification(
            "embedded_digits",
            "train",
            28,
            100,
            epochs=2,
            seed=seed,
            take=300,
            data_dir=digits_dir,
            preprocessing="raw",
        )
        return np.concatenate([x.reshape(len(x), -1).sum(axis=1) for x, _ in batches(ds)])

    first, again, other = order(0), order(0), order(1)
    np.testing.assert_array_equal(first, again)  # a resumed run sees the same order
    epoch0, epoch1 = first[:300], first[300:]
    assert not np.array_equal(epoch0, epoch1) and not np.array_equal(first, other)
    np.testing.assert_array_equal(np.sort(epoch0), np.sort(epoch1))  # both the whole split


def test_mixup_gives_convex_label_mixtures(digits_dir):
    ds = image_classification("embedded_digits", "train", 28, 64, mixup=0.2, take=256, data_dir=digits_dir)
    for x, y in batches(ds):
        assert y.shape == (64, 10) and y.dtype == np.float32
        np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-5)
        assert (y >= 0).all() and -1.0 <= x.min() and x.max() <= 1.0
    assert (y.max(axis=1) < 0.999).any()  # some examples really are mixed


def test_randaugment_through_kerascv(digits_dir):
    plain, augmented = (
        batches(
            image_classification(
                "embedded_digits", "train", 32, 32, augment=a, take=64, data_dir=digits_dir, shuffle=False
            )
        )
        for a in (None, "randaugment")
    )
    assert augmented[0][0].shape == (32, 32, 32, 3)
    assert -1.0 <= augmented[0][0].min() and augmented[0][0].max() <= 1.0
    assert not np.allclose(plain[0][0], augmented[0][0])
    np.testing.assert_array_equal(plain[0][1], augmented[0][1])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(augment="cutout"), "augment"),
        (dict(preprocessing="imagenet"), "preprocessing"),
        (dict(image_size=(32,)), "image_size"),
        (dict(batch_size=0), "batch_size"),
        (dict(label_key="alphabet"), "features"),
        (dict(take=0), "`take` must be None or an integer >= 1"),  # not "all of it" (nor nothing)
        (dict(batch_size=True), "`batch_size`"),
        (dict(mixup=-1), "`mixup`"),
        (dict(image_size=0), "`image_size`"),
    ],
)
def test_bad_arguments_name_the_problem(kwargs, message, digits_dir):
    with pytest.raises(ValueError, match=message):
        image_classification("embedded_digits", "test", **{"data_dir": digits_dir, **kwargs})


def test_fit_consumes_the_pipeline(digits_dir):
    train = image_classification(
        "embedded_digits", "train", 28, 32, take=256, data_dir=digits_dir, channels=1, preprocessing="unit"
    )
    model = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")]
    )
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(train, epochs=3, verbose=0)
    # Seed sweep (2026-12-01): last / first epoch's loss 0.537-0.564 (TensorFlow), 0.534-0.554
    # (JAX), 0.535-0.556 (PyTorch).
    record("last_over_first_loss", history.history["loss"][-1] / history.history["loss"][0])
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_coco_detection_batches_in_kerascv_format():
    with tfds.testing.mock_data(num_examples=6):
        batch = next(
            iter(object_detection("coco/2017", "validation", image_size=64, batch_size=3, max_boxes=20))
        )
    images, boxes = np.asarray(batch["images"]), batch["bounding_boxes"]
    classes, coords = np.asarray(boxes["classes"]), np.asarray(boxes["boxes"])
    assert images.shape == (3, 64, 64, 3) and -1.0 <= images.min() and images.max() <= 1.0
    assert coords.shape == (3, 20, 4) and classes.shape == (3, 20)
    real = classes >= 0
    assert real.any() and (classes[~real] == -1).all()  # padding
    assert (coords[real] >= -1e-3).all() and (coords[real] <= 64 + 1e-3).all()  # pixels, xyxy
    assert (coords[real][:, 2] >= coords[real][:, 0]).all() and (
        coords[real][:, 3] >= coords[real][:, 1]
    ).all()
    assert (classes[real] < 80).all()


def test_classification_datasets_are_not_detection_datasets(digits_dir):
    with pytest.raises(ValueError, match="not a detection dataset"):
        object_detection("embedded_digits", "test", data_dir=digits_dir)


# --- ImageNet crops -----------------------------------------------------------------------------


def test_center_crop_is_the_central_224_of_256():
    # A 256 x 320 image is already 256 on its short side: the crop is its central 224 x 224, exactly.
    image = np.random.default_rng(0).integers(0, 256, (256, 320, 3)).astype("uint8")
    crop = np.asarray(pipelines.center_crop(tf.constant(image), 224))
    np.testing.assert_array_equal(crop, image[16:240, 48:272].astype("float32"))
    # Twice the size: the same pixels after a 2x downscale (a box filter of 2x2 for bilinear
    # resizing at half-pixel centres), then the same central crop.
    large = np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)
    np.testing.assert_allclose(np.asarray(pipelines.center_crop(tf.constant(large), 224)), crop, atol=1e-3)


def _reference_boxes(height, width, rng, count):
    """Literal numpy Inception box sampling (Szegedy et al.; TensorFlow's documented
    sample_distorted_bounding_box on the whole-image box): aspect ratio uniform in [3/4, 4/3],
    the box's height uniform between those giving 8% and 100% of the area, at most 10 tries,
    accepted if it covers at least 10% of the image and fits; the whole image otherwise."""
    areas, aspects = [], []
    for _ in range(count):
        for _ in range(10):
            aspect = rng.uniform(3 / 4, 4 / 3)
            low = round(np.sqrt(0.08 * height * width / aspect))
            high = min(round(np.sqrt(height * width / aspect)), height, int((width + 0.5) / aspect))
            h = rng.integers(min(low, high), high + 1)
            w = round(h * aspect)
            if 0 < w <= width and h * w >= 0.1 * height * width:
                areas.append(h * w / (height * width))
                aspects.append(w / h)
                break
        else:
            areas.append(1.0)
            aspects.append(width / height)
    return np.array(areas), np.array(aspects)


def test_random_resized_crop_boxes_follow_the_inception_statistics():
    height, width, count = 120, 160, 1000
    # In a tf.data map, as the pipeline runs it (a graph: fast), one seed per example.
    boxes = tf.data.Dataset.range(count).map(
        lambda i: pipelines.random_resized_crop_box(tf.constant([height, width, 3]), tf.stack([i, 11]))
    )
    offsets, sizes = (np.asarray(a) for a in next(iter(boxes.batch(count))))
    assert (offsets >= 0).all() and (offsets + sizes <= [height, width]).all()  # inside the image
    area = sizes.prod(axis=1) / (height * width)
    aspect = sizes[:, 1] / sizes[:, 0]
    assert area.min() >= 0.1 - 1e-2 and area.max() <= 1.0
    assert (aspect >= 3 / 4 - 0.02).all() and (aspect <= 4 / 3 + 0.02).all()
    ref_area, ref_aspect = _reference_boxes(height, width, np.random.default_rng(0), count)
    # Standard errors of the means are about 0.007 (area) and 0.005 (aspect).
    assert abs(area.mean() - ref_area.mean()) < 0.03, (area.mean(), ref_area.mean())
    assert abs(np.median(area) - np.median(ref_area)) < 0.04
    assert abs(aspect.mean() - ref_aspect.mean()) < 0.02
    # Placed uniformly: box centres average to the image centre.
    centres = offsets + sizes / 2
    np.testing.assert_allclose(centres.mean(axis=0), [height / 2, width / 2], rtol=0.03)


def test_random_resized_crop_flips_half_and_repeats_with_its_seed():
    # A left-right ramp: a flipped crop runs the other way.
    image = tf.constant(np.tile(np.arange(64, dtype="float32"), (48, 1))[..., None].repeat(3, -1))
    seeds = tf.data.Dataset.range(200).map(lambda i: tf.stack([i, 3]))
    crops = np.asarray(
        next(iter(seeds.map(lambda seed: pipelines.random_resized_crop(image, 16, seed)).batch(200)))
    )
    flipped = np.mean([c[0, 0, 0] > c[0, -1, 0] for c in crops])
    assert 0.4 < flipped < 0.6 and crops.shape == (200, 16, 16, 3)
    again = np.asarray(pipelines.random_resized_crop(image, 16, tf.constant([0, 3], tf.int64)))
    np.testing.assert_array_equal(again, crops[0])


def test_crops_in_the_pipeline(digits_dir):
    common = dict(split="train", batch_size=16, take=32, data_dir=digits_dir, preprocessing="raw")

    def run(**kwargs):
        return batches(image_classification("embedded_digits", image_size=24, **common, **kwargs))

    resized = run(shuffle=False)
    center = run(shuffle=False, crop="center")
    first, again = run(crop="random_resized", epochs=2, seed=3), run(crop="random_resized", epochs=2, seed=3)
    assert center[0][0].shape == (16, 24, 24, 3) and first[0][0].shape == (16, 24, 24, 3)
    assert not np.allclose(center[0][0], resized[0][0])  # a crop, not the whole image
    for (x, y), (x2, y2) in zip(first, again):  # repeatable
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
    assert len(first) == 4 and 0 <= first[0][0].min() and first[0][0].max() <= 255
    with pytest.raises(ValueError, match="`crop`"):
        image_classification("embedded_digits", "test", data_dir=digits_dir, crop="random")
