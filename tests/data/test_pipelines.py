"""The TFDS pipelines: the real tfds code path on mocked bytes, and the embedded dataset."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import keras

from keras_routing.data import image_classification, load_digits, normalize, object_detection
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
