import numpy as np
import pytest

from keras_routing.data import load_digit_images, load_digits


def test_embedded_digits_are_the_shared_mnist_test_split(shared_data):
    (x_train, y_train), (x_test, y_test) = load_digits()
    assert x_train.shape == (8000, 28, 28, 1) and x_test.shape == (2000, 28, 28, 1)
    assert x_train.dtype == np.uint8
    reference = np.load(shared_data / "mnist" / "mnist_test.npz")
    # Same images and labels as the shared copy, as multisets: the split is a permutation.
    ours = np.concatenate([x_train, x_test])[..., 0].reshape(10000, -1)
    theirs = reference["images"].reshape(10000, -1)
    assert sorted(map(bytes, ours)) == sorted(map(bytes, theirs))
    np.testing.assert_array_equal(
        np.bincount(np.concatenate([y_train, y_test])), np.bincount(reference["labels"])
    )


def test_split_is_shuffled_and_has_every_class():
    (_, y_train), (_, y_test) = load_digits()
    assert set(np.unique(y_train)) == set(range(10)) == set(np.unique(y_test))
    assert np.bincount(y_test).min() > 150


def test_digit_images_are_the_digits_resized_to_rgb_in_minus_one_one():
    (x_raw, _), _ = load_digits()
    (x, y), (x_test, _) = load_digit_images(28)
    assert x.shape == (8000, 28, 28, 3) and x_test.shape == (2000, 28, 28, 3) and x.dtype == np.float32
    # At the digits' own size, resizing is the identity: MobileNet's scaling of the raw pixels.
    np.testing.assert_allclose(x[..., 1], x_raw[..., 0] / 127.5 - 1.0, atol=1e-6)
    np.testing.assert_array_equal(x[..., 0], x[..., 2])
    with pytest.raises(ValueError, match="`size`"):
        load_digit_images(0)


def test_digit_images_match_the_tfds_pipeline(digits_dir):
    """One preprocessing for the embedded digits: arrays and the TFDS pipeline give a model the
    same pixels (a trained model scored 47% on zero-padded arrays and 56% on resized TFDS
    batches before they agreed)."""
    from keras_routing.data import image_classification

    _, (x_test, y_test) = load_digit_images(32)
    batches = image_classification("embedded_digits", "test", 32, 500, shuffle=False, data_dir=digits_dir)
    images, labels = (
        np.concatenate(part) for part in zip(*((np.asarray(a), np.asarray(b)) for a, b in batches))
    )

    # TFDS reads its shards in its own order: match the digits by label, then by their ink per row.
    def ordered(x, y):
        rows = np.round(x[..., 0].sum(axis=2), 2)
        order = np.lexsort((*rows.T[::-1], y))
        return x[order], y[order]

    (images, labels), (x_test, y_test) = ordered(images, labels), ordered(x_test, y_test)
    np.testing.assert_array_equal(labels, y_test)
    np.testing.assert_allclose(images, x_test, atol=1e-5)
