"""TFDS input pipelines that ``model.fit`` consumes on TensorFlow, JAX and PyTorch.

    train = keras_routing.data.image_classification("cifar10", "train", image_size=32, batch_size=64)
    model.fit(train, epochs=...)

Every dataset goes through the same steps: ``tfds.load``, decode, grey to RGB (or back) as the
model needs, crop and resize (``crop``: the whole image resized, the Inception-style random
resized crop with flip for ImageNet training, or the central 224-of-256 crop for ImageNet
evaluation), shuffle (seeded per epoch, so a run resumed from a backup sees the data in the
same order), batch, augmentation (flip, KerasCV's RandAugment), the model's normalisation, mixup
(alpha 0.2 in the paper), prefetch. The CondConv paper regularised its large models with
AutoAugment's ImageNet policy and mixup; KerasCV 0.9 has no AutoAugment, and RandAugment (a
different, later policy) is what ``augment="randaugment"`` offers in its place.
"""

import contextlib
import io
import logging

import tensorflow as tf
import tensorflow_datasets as tfds

from keras_routing.data import digits_builder
from keras_routing.recipes import AUGMENTATIONS, CROPS  # with recipes' other choices, for the command
from keras_routing.validation import integer, is_integer, number

# How each zoo family expects its pixels (as keras.applications' preprocess_input does).
PREPROCESSING = ("mobilenet", "caffe", "unit", "raw")
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

# The ImageNet convention behind the paper's Tables 1-3 (Inception; the TPU reference
# MobileNet / ResNet / EfficientNet preprocessing): train on a random box of 8%-100% of the image
# (at least 10% after the box-coverage check) with aspect ratio 3/4-4/3, resized to the input
# size and flipped; evaluate on the central 224 of 256 (a fraction 0.875).
CROP_AREA_RANGE = (0.08, 1.0)
CROP_MIN_COVERED = 0.1
CROP_ASPECT_RANGE = (3 / 4, 4 / 3)
CROP_MAX_ATTEMPTS = 10
CENTER_CROP_FRACTION = 224 / 256


def normalize(images, preprocessing):
    """Float pixels in [0, 255] to what the model takes: ``"mobilenet"`` [-1, 1], ``"caffe"`` BGR
    minus the ImageNet mean (ResNet-50), ``"unit"`` [0, 1], ``"raw"`` unchanged."""
    if preprocessing == "mobilenet":
        return images / 127.5 - 1.0
    if preprocessing == "caffe":
        return images[..., ::-1] - tf.constant(_CAFFE_MEAN_BGR, images.dtype)
    if preprocessing == "unit":
        return images / 255.0
    if preprocessing == "raw":
        return images
    raise ValueError(f"`preprocessing` must be one of {PREPROCESSING}, got {preprocessing!r}.")


def _check(name, value, choices):
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}, got {value!r}.")


def _size(image_size):
    pair = (image_size, image_size) if is_integer(image_size) else image_size
    if (
        not isinstance(pair, (tuple, list))
        or len(pair) != 2
        or not all(is_integer(s) and s > 0 for s in pair)
    ):
        raise ValueError(
            f"`image_size` must be an integer >= 1 or a (height, width) pair of them, got {image_size!r}."
        )
    return tuple(int(s) for s in pair)


def center_crop(image, image_size, fraction=CENTER_CROP_FRACTION):
    """The central ``image_size`` of ``image`` resized, aspect kept, to ``image_size / fraction``
    (the ImageNet evaluation crop: 224 of 256 for ``fraction`` 0.875), float32 [0, 255].

    ``tf.image`` ops, per example: images of every size come in before batching, which Keras's
    and KerasCV's batch-level layers do not take, and the crop needs the image's own shape."""
    height, width = _size(image_size)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.maximum(height / shape[0], width / shape[1]) / fraction
    resized_shape = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), [height, width])
    resized = tf.image.resize(image, resized_shape)
    top = (resized_shape[0] - height) // 2
    left = (resized_shape[1] - width) // 2
    return tf.image.crop_to_bounding_box(resized, top, left, height, width)


def random_resized_crop_box(image_shape, seed):
    """``(offset, size)``, each ``[y, x]``, of an Inception-style random box of an image of
    ``image_shape`` (height, width, ...): ``tf.image``'s ``sample_distorted_bounding_box``, the op
    the Inception and TPU reference pipelines call, with their settings (``CROP_*``); where it
    finds no box in ``CROP_MAX_ATTEMPTS`` tries it returns the whole image, which the reference
    pipelines replace with the central crop (so does ``random_resized_crop``)."""
    offset, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        image_shape,
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, [1, 1, 4]),
        seed=seed,
        min_object_covered=CROP_MIN_COVERED,
        aspect_ratio_range=CROP_ASPECT_RANGE,
        area_range=CROP_AREA_RANGE,
        max_attempts=CROP_MAX_ATTEMPTS,
        use_image_if_no_bounding_boxes=True,
    )
    return offset[:2], size[:2]


def random_resized_crop(image, image_size, seed):
    """An Inception-style random resized crop of ``image``, flipped left-right with probability
    1/2, as float32 [0, 255] of ``image_size``; ``seed``: a stateless seed (two integers), so a
    pipeline gives the same crops each time it runs."""
    height, width = _size(image_size)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
    offset, size = random_resized_crop_box(tf.shape(image), seeds[0])
    whole = tf.reduce_all(tf.equal(size, tf.shape(image)[:2]))

    def crop():
        box = tf.image.crop_to_bounding_box(image, offset[0], offset[1], size[0], size[1])
        return tf.image.resize(box, (height, width))

    cropped = tf.cond(whole, lambda: center_crop(image, (height, width)), crop)
    return tf.image.stateless_random_flip_left_right(cropped, seeds[1])


def _mixup(alpha, num_classes, seed):
    """Batch-level mixup (Zhang et al.): each example mixed with another of the batch."""
    import keras_cv

    layer = keras_cv.layers.MixUp(alpha=alpha, seed=seed)

    def apply(images, labels):
        mixed = layer({"images": images, "labels": tf.one_hot(labels, num_classes)}, training=True)
        return mixed["images"], mixed["labels"]

    return apply


def image_classification(
    name,
    split="train",
    image_size=224,
    batch_size=32,
    *,
    augment=None,
    mixup=0.0,
    crop="resize",
    preprocessing="mobilenet",
    channels=3,
    shuffle=None,
    shuffle_buffer=10_000,
    epochs=None,
    seed=0,
    label_key="label",
    drop_remainder=None,
    data_dir=None,
    download=False,
    take=None,
    cache=False,
):
    """A batched ``tf.data.Dataset`` of ``(images, labels)`` from the TFDS dataset ``name``.

    Images are float32 ``(batch, *image_size, channels)`` normalised by ``preprocessing``
    (``keras_routing.zoo.preprocessing(model_name)`` says which a zoo model takes). Labels are
    int64 class indices, or one-hot float32 rows when ``mixup`` > 0 (train with
    ``categorical_crossentropy`` then).

    - ``split``: any TFDS split string (``"train"``, ``"test[:10%]"``, ...).
    - ``augment``: ``None``; ``"flip"`` (random horizontal flip); ``"randaugment"`` (KerasCV's
      RandAugment, 2 ops at magnitude 0.5, after a flip).
    - ``mixup``: the Beta(alpha, alpha) of mixup; the paper uses 0.2. 0 turns it off.
    - ``crop``: ``"resize"`` (default; the whole image resized to ``image_size``, for small
      data); ``"random_resized"`` (the Inception-style training crop: a random box of 8%-100% of
      the area, aspect 3/4-4/3, resized, flipped; see ``random_resized_crop``); ``"center"`` (the
      evaluation crop: the central ``image_size`` of the image resized to ``image_size / 0.875``,
      224 of 256). The ImageNet recipes train with the first and evaluate with the second. The
      random crop is drawn after shuffling and caching, from stateless seeds derived from
      ``seed`` and the example's position in the stream, so a rerun repeats it.
    - ``shuffle``: defaults to True for splits whose name starts with ``"train"``. Each epoch
      gets its own shuffle, seeded from ``seed``, the epoch and TensorFlow's global seed (which
      ``keras.utils.set_random_seed`` sets), so a rerun of the same command repeats it.
    - ``epochs``: with an int, the dataset holds that many epochs back to back (pass
      ``steps_per_epoch`` to ``fit``); ``None`` holds one epoch.
    - ``take``: keep only the first ``take`` examples of the split (quick runs).
    - ``cache``: keep the resized images in memory after the first epoch (small datasets).
    - ``download``: let TFDS download and prepare the data; by default it must already be in
      ``data_dir`` (or be a dataset that prepares itself offline, like ``embedded_digits``).
    """
    height, width = _size(image_size)
    _check("augment", augment, (None, *AUGMENTATIONS))
    _check("crop", crop, CROPS)
    _check("preprocessing", preprocessing, PREPROCESSING)
    _check("channels", channels, (1, 3))
    mixup = number(mixup, "mixup", at_least=0)  # 0 turns it off
    batch_size = integer(batch_size, "batch_size")
    take = integer(take, "take", optional=True)
    epochs = integer(epochs, "epochs", optional=True)
    training = split.startswith("train")
    shuffle = training if shuffle is None else shuffle
    drop_remainder = training if drop_remainder is None else drop_remainder

    builder = prepared_builder(name, data_dir, download)
    features = builder.info.features
    if "image" not in features or label_key not in features:
        raise ValueError(
            f"TFDS dataset {name!r} has features {sorted(features.keys())}; image classification "
            f"needs 'image' and {label_key!r} (pass `label_key=`)."
        )
    num_classes = features[label_key].num_classes
    decoded = read_split(builder, split)
    if take is not None:
        decoded = decoded.take(take)

    def prepare(example):
        image = example["image"]
        if image.shape[-1] != channels:
            image = tf.image.grayscale_to_rgb(image) if channels == 3 else tf.image.rgb_to_grayscale(image)
        if crop == "resize":
            image = tf.image.resize(image, (height, width))  # float32, [0, 255]
        elif crop == "center":
            image = center_crop(image, (height, width))
        # "random_resized": drawn after the shuffle, below (not frozen by `cache`)
        return image, example[label_key]

    images = decoded.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        images = images.cache()
    if not shuffle:
        stream = images if epochs is None else images.repeat(epochs)
    elif epochs is None:
        # One epoch, reshuffled each time fit iterates it again.
        stream = images.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    else:
        # Epochs back to back, epoch e shuffled with a seed of (seed, e) only.
        stream = images.shuffle(shuffle_buffer, seed=seed * 1_000_003, reshuffle_each_iteration=False)
        for epoch in range(1, epochs):
            stream = stream.concatenate(
                images.shuffle(shuffle_buffer, seed=seed * 1_000_003 + epoch, reshuffle_each_iteration=False)
            )
    if crop == "random_resized":
        # One stateless seed per example, in stream order: repeatable, and new in each epoch.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=epochs is None).batch(2)
        stream = tf.data.Dataset.zip(stream, seeds).map(
            lambda example, pair: (random_resized_crop(example[0], (height, width), pair), example[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    stream = stream.batch(batch_size, drop_remainder=drop_remainder)
    if augment is not None:
        stream = stream.map(_augmenter(augment, seed, channels), num_parallel_calls=tf.data.AUTOTUNE)
    stream = stream.map(lambda x, y: (normalize(x, preprocessing), y), num_parallel_calls=tf.data.AUTOTUNE)
    if mixup:
        stream = stream.map(_mixup(mixup, num_classes, seed), num_parallel_calls=tf.data.AUTOTUNE)
    return stream.prefetch(tf.data.AUTOTUNE)


def _augmenter(augment, seed, channels):
    """Batch-level augmentation of [0, 255] float images, with KerasCV's layers."""
    import keras_cv

    flip = keras_cv.layers.RandomFlip("horizontal", seed=seed)
    layers = [flip]
    if augment == "randaugment":
        if channels != 3:
            raise ValueError("`augment='randaugment'` needs RGB images (`channels=3`).")
        layers.append(
            keras_cv.layers.RandAugment(
                value_range=(0, 255), augmentations_per_image=2, magnitude=0.5, seed=seed
            )
        )

    def apply(images, labels):
        for layer in layers:
            images = layer(images, training=True)
        return images, labels

    return apply


def prepared_builder(name, data_dir=None, download=False):
    """The TFDS builder of ``name``; ``embedded_digits`` (or any dataset, with ``download``) is
    prepared first. Nothing is downloaded otherwise: see ``read_split`` for the error."""
    if name == digits_builder.NAME:
        with _quiet_tfds():  # shipped in the package: nothing to download, nothing to announce
            builder = tfds.builder(name, data_dir=data_dir)
            if not builder.is_prepared():
                builder.download_and_prepare()
        return builder
    builder = tfds.builder(name, data_dir=data_dir)
    if download:
        builder.download_and_prepare()
    return builder


@contextlib.contextmanager
def _quiet_tfds():
    """No TFDS banner ("Downloading and preparing dataset Unknown size ..."), progress bars or
    absl warnings about a folder it is about to fill."""
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    tfds.disable_progress_bar()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        tfds.display_progress_bar(True)
        absl.setLevel(level)


def _not_prepared(builder):
    return ValueError(
        f"TFDS dataset {builder.name!r} is not prepared in {builder.data_dir_root}: run `tfds build "
        f"{builder.name}` where it can be downloaded (or pass download=True), then point data_dir at it."
    )


def read_split(builder, split):
    """``split`` of a prepared builder, in file order; a clear error if the data is not there."""
    # No TFDS auto-cache: `take` would leave it half-read; `cache=True` caches after resizing.
    read_config = tfds.ReadConfig(try_autocache=False)
    try:
        return builder.as_dataset(split=split, shuffle_files=False, read_config=read_config)
    except AssertionError as error:  # TFDS's "could not find data in ..."
        raise _not_prepared(builder) from error


def num_examples(name, split, data_dir=None):
    """Examples in ``split`` (a TFDS split string, ``"train[:10%]"`` too) of dataset ``name``."""
    builder = prepared_builder(name, data_dir)
    try:
        return builder.info.splits[split].num_examples
    except KeyError as error:  # no split information: the data was never prepared
        raise _not_prepared(builder) from error


def object_detection(
    name="coco/2017",
    split="train",
    image_size=300,
    batch_size=32,
    *,
    bounding_box_format="xyxy",
    max_boxes=100,
    preprocessing="mobilenet",
    shuffle=None,
    shuffle_buffer=1_000,
    seed=0,
    data_dir=None,
    download=False,
    take=None,
):
    """A batched detection ``tf.data.Dataset`` in KerasCV's format, for SSD-style models.

    Each element is ``{"images": (batch, size, size, 3) float32, "bounding_boxes": {"boxes":
    (batch, max_boxes, 4), "classes": (batch, max_boxes)}}``: images resized with KerasCV's
    ``Resizing(pad_to_aspect_ratio=True)`` (the boxes move with them), boxes in pixels in
    ``bounding_box_format``, padded with class -1. Crowd annotations are dropped.
    """
    import keras_cv

    height, width = _size(image_size)
    _check("preprocessing", preprocessing, PREPROCESSING)
    batch_size = integer(batch_size, "batch_size")
    take = integer(take, "take", optional=True)
    builder = prepared_builder(name, data_dir, download)
    if "objects" not in builder.info.features:
        raise ValueError(f"TFDS dataset {name!r} has no 'objects' feature: it is not a detection dataset.")
    decoded = read_split(builder, split)
    if take is not None:
        decoded = decoded.take(take)
    if shuffle if shuffle is not None else split.startswith("train"):
        decoded = decoded.shuffle(shuffle_buffer, seed=seed)

    def prepare(example):
        image = tf.cast(example["image"], tf.float32)
        objects = {k: v for k, v in example["objects"].items() if k in ("bbox", "label", "is_crowd")}
        # One length for all (TFDS's mock data draws each sequence's length on its own).
        count = tf.reduce_min([tf.shape(v)[0] for v in objects.values()])
        objects = {k: v[:count] for k, v in objects.items()}
        keep = tf.logical_not(objects["is_crowd"]) if "is_crowd" in objects else tf.ones([count], bool)
        boxes = keras_cv.bounding_box.convert_format(
            tf.boolean_mask(objects["bbox"], keep),
            source="rel_yxyx",
            target=bounding_box_format,
            images=image,
        )
        classes = tf.cast(tf.boolean_mask(objects["label"], keep), tf.float32)
        return {"images": image, "bounding_boxes": {"boxes": boxes, "classes": classes}}

    resize = keras_cv.layers.Resizing(
        height, width, pad_to_aspect_ratio=True, bounding_box_format=bounding_box_format
    )

    def finish(batch):
        batch = resize(batch)
        boxes = keras_cv.bounding_box.to_dense(batch["bounding_boxes"], max_boxes=max_boxes)
        return {"images": normalize(batch["images"], preprocessing), "bounding_boxes": boxes}

    stream = decoded.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    stream = stream.ragged_batch(batch_size, drop_remainder=split.startswith("train"))
    return stream.map(finish, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
