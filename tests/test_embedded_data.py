import numpy as np

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
    np.testing.assert_array_equal(np.bincount(np.concatenate([y_train, y_test])), np.bincount(reference["labels"]))


def test_split_is_shuffled_and_has_every_class():
    (_, y_train), (_, y_test) = load_digits()
    assert set(np.unique(y_train)) == set(range(10)) == set(np.unique(y_test))
    assert np.bincount(y_test).min() > 150


def test_digit_images_are_the_digits_padded_to_rgb_in_minus_one_one():
    (x_raw, _), _ = load_digits()
    (x, y), (x_test, _) = load_digit_images(32)
    assert x.shape == (8000, 32, 32, 3) and x_test.shape == (2000, 32, 32, 3) and x.dtype == np.float32
    assert x.min() == -1.0 and x.max() == 1.0
    np.testing.assert_array_equal(x[:, :2], -1.0)  # zero padding, i.e. black, at -1
    np.testing.assert_allclose(x[0, 2:30, 2:30, 1], x_raw[0, :, :, 0] / 127.5 - 1.0, atol=1e-6)
    np.testing.assert_array_equal(x[..., 0], x[..., 2])
