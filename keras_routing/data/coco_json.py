"""COCO-format data from a folder (an images directory and an ``instances_*.json``) as
``tf.data`` pipelines, for any user with such a folder (COCO itself, COCO128, a labelled set of
one's own): no TFDS preparation, no download.

    train = keras_routing.data.coco_segmentation("coco128", "train2017", image_size=128, batch_size=8)
    model.fit(train, epochs=...)          # (images, masks): (8, 128, 128, 3), (8, 128, 128)

The folder is COCO's layout: ``<path>/<split>/*.jpg`` and ``<path>/annotations/instances_<split>.json``.

``CocoJson`` reads an instances file once: its images (in file order), each image's
annotations, and its categories, whose ids (COCO 2017: 80 categories with ids 1-90 and gaps)
map to contiguous class indices 1..N in ascending id order; 0 is the background. What a task
needs per image comes from there: here the semantic mask (``semantic_mask``); the detection
pipeline takes the boxes and classes of ``annotations`` and ``class_index`` from the same object.

Semantic masks: every annotation is rasterised with pycocotools (polygons, uncompressed and
compressed RLE; crowd regions are their class too, unless ``include_crowd=False``). Where
instances overlap, the smaller one (by the json's ``area``) wins: instances are painted from
the largest to the smallest, equal areas in file order (the later wins), so an object in front
of a larger one (a cup on a table) keeps its pixels.
"""

import json
import pathlib
import re

import numpy as np
import tensorflow as tf

from keras_routing.data.pipelines import PREPROCESSING, _size, normalize
from keras_routing.validation import integer

_SPLIT = re.compile(r"^([\w.-]+?)(?:\[(-?\d*)(%?):(-?\d*)(%?)\])?$")


class CocoJson:
    """The images, annotations and categories of one COCO instances file.

    Args:
        annotations: path of the instances json.
        images: the folder of its images (default: ``<json's folder>/../<split>`` for a json
            named ``instances_<split>.json``, as COCO lays them out).
    Attributes:
        images: the json's image records, in file order.
        category_ids: the category ids in ascending order; ``class_index[id]`` is 1-based.
        class_names: ``["background", <category names>...]``, by class index.
        num_classes: categories + 1 (the background).
    """

    def __init__(self, annotations, images=None):
        path = pathlib.Path(annotations)
        if not path.is_file():
            raise ValueError(
                f"`annotations` must be a COCO instances json file, got {str(path)!r}: not found."
            )
        with path.open() as file:
            data = json.load(file)
        for key in ("images", "annotations", "categories"):
            if key not in data:
                raise ValueError(f"`annotations` {str(path)!r} is not a COCO instances file: no {key!r}.")
        if images is None:
            split = path.stem.removeprefix("instances_")
            images = path.parent.parent / split
        self.images_dir = pathlib.Path(images)
        self.images = list(data["images"])
        categories = sorted(data["categories"], key=lambda c: c["id"])
        self.category_ids = [c["id"] for c in categories]
        self.class_index = {c: i + 1 for i, c in enumerate(self.category_ids)}
        self.class_names = ["background", *(c["name"] for c in categories)]
        self.num_classes = len(categories) + 1
        self._by_image = {record["id"]: [] for record in self.images}
        for annotation in data["annotations"]:
            if annotation["category_id"] not in self.class_index:
                raise ValueError(
                    f"`annotations`: annotation {annotation.get('id')} has category "
                    f"{annotation['category_id']}, not among the file's categories."
                )
            self._by_image.setdefault(annotation["image_id"], []).append(annotation)
        self._record = {record["id"]: record for record in self.images}

    def __len__(self):
        return len(self.images)

    def annotations(self, image_id):
        """The annotations of image ``image_id``, in file order (COCO's dicts: ``bbox``,
        ``category_id``, ``segmentation``, ``area``, ``iscrowd``)."""
        return self._by_image.get(image_id, [])

    def image_path(self, image_id):
        return self.images_dir / self._record[image_id]["file_name"]

    def instance_mask(self, annotation, height, width):
        """One annotation rasterised: ``(height, width)`` uint8, 1 inside."""
        from pycocotools import mask as coco_mask

        segmentation = annotation["segmentation"]
        if isinstance(segmentation, list):  # polygons
            if not segmentation:
                return np.zeros((height, width), np.uint8)
            rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE (crowds)
            rle = coco_mask.frPyObjects(segmentation, height, width)
        else:  # compressed RLE
            rle = segmentation
        return coco_mask.decode(rle)

    def semantic_mask(self, image_id, include_crowd=True):
        """``(height, width)`` uint8 at the image's size: 0 background, else the class index of
        the pixel's smallest instance (see the module's doc)."""
        record = self._record[image_id]
        height, width = int(record["height"]), int(record["width"])
        mask = np.zeros((height, width), np.uint8)
        annotations = [a for a in self.annotations(image_id) if include_crowd or not a.get("iscrowd")]
        # Stable sort: largest first, so smaller (and, among equals, later) instances paint over.
        for annotation in sorted(annotations, key=lambda a: -float(a.get("area", 0.0))):
            pixels = self.instance_mask(annotation, height, width).astype(bool)
            mask[pixels] = self.class_index[annotation["category_id"]]
        return mask

    def segmentation(self, image_size, *, indices=None, preprocessing="unit", include_crowd=True):
        """Unbatched ``tf.data.Dataset`` of ``(image, mask)``: ``(height, width, 3)`` float32
        normalised as ``preprocessing`` says, and ``(height, width)`` int32 class indices, both
        resized (stretched, bilinear for the image, nearest for the mask) to ``image_size``.
        ``indices``: positions in ``images`` (default all, in file order)."""
        height, width = _size(image_size)
        if preprocessing not in PREPROCESSING:
            raise ValueError(f"`preprocessing` must be one of {PREPROCESSING}, got {preprocessing!r}.")
        indices = list(range(len(self.images))) if indices is None else [int(i) for i in indices]
        ids = [self.images[i]["id"] for i in indices]
        paths = [str(self.image_path(i)) for i in ids]
        missing = [p for p in paths if not pathlib.Path(p).is_file()]
        if missing:
            raise ValueError(
                f"{len(missing)} images of the json are not in {str(self.images_dir)!r}: {missing[0]}, ..."
            )

        def rasterise(image_id):
            return self.semantic_mask(int(image_id), include_crowd=include_crowd)

        def load(path, image_id):
            image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
            image = tf.image.resize(tf.cast(image, tf.float32), (height, width), method="bilinear")
            image = tf.clip_by_value(image, 0.0, 255.0)
            mask = tf.numpy_function(rasterise, [image_id], tf.uint8, stateful=False)
            mask = tf.ensure_shape(mask, [None, None])
            mask = tf.image.resize(mask[..., None], (height, width), method="nearest")[..., 0]
            image = tf.ensure_shape(normalize(image, preprocessing), [height, width, 3])
            return image, tf.ensure_shape(tf.cast(mask, tf.int32), [height, width])

        records = tf.data.Dataset.from_tensor_slices((paths, tf.constant(ids, tf.int64)))
        return records.map(load, num_parallel_calls=tf.data.AUTOTUNE)


def split_indices(split, count):
    """``(name, positions)`` of a TFDS-style split string over ``count`` images in file order:
    ``"train2017"`` all, ``"train2017[:96]"``, ``"train2017[75%:]"``, ``"val2017[-10:]"``."""
    match = _SPLIT.match(split) if isinstance(split, str) else None
    if match is None:
        raise ValueError(f"`split` must be a split name with an optional [start:stop] slice, got {split!r}.")
    name, start, start_pct, stop, stop_pct = match.groups()

    def bound(text, percent, default):
        if text in (None, "", "-"):
            return default
        value = int(text)
        return round(value * count / 100) if percent else value

    positions = list(range(count))[slice(bound(start, start_pct, None), bound(stop, stop_pct, None))]
    return name, positions


def coco_segmentation(
    path,
    split="train2017",
    image_size=128,
    batch_size=8,
    *,
    annotations=None,
    preprocessing="unit",
    include_crowd=True,
    shuffle=None,
    shuffle_buffer=1_000,
    seed=0,
    cache=False,
    drop_remainder=False,
):
    """A batched ``tf.data.Dataset`` of ``(images, masks)`` from a COCO-format folder, as the
    TFDS pipelines of ``keras_routing.data`` give: images ``(batch, height, width, 3)`` float32
    (``preprocessing``: "unit" [0, 1] by default, the DeepMoE zoo's), masks ``(batch, height,
    width)`` int32 with 0 the background and 1..N COCO's categories in id order (N = 80 for
    COCO: ``CocoJson(...).num_classes`` is 81).

    ``split``: the images folder under ``path`` (``"train2017"``), optionally sliced TFDS-style
    (``"train2017[:96]"``, ``"train2017[75%:]"``); the annotations are
    ``<path>/annotations/instances_<split>.json`` unless ``annotations`` names the file.
    ``shuffle``: default for splits whose name starts with "train" (seeded, reshuffled each
    epoch). ``cache``: keep the resized pairs in memory after the first epoch (each mask is
    rasterised once).
    """
    root = pathlib.Path(path)
    batch_size = integer(batch_size, "batch_size")
    name, _ = split_indices(split, 0)  # the folder's name; a bad split string fails here
    annotations = annotations or root / "annotations" / f"instances_{name}.json"
    coco = CocoJson(annotations, images=root / name)
    _, positions = split_indices(split, len(coco))
    if not positions:
        raise ValueError(f"`split` {split!r} selects no images (the file has {len(coco)}).")
    stream = coco.segmentation(
        image_size, indices=positions, preprocessing=preprocessing, include_crowd=include_crowd
    )
    if cache:
        stream = stream.cache()
    if shuffle if shuffle is not None else name.startswith("train"):
        stream = stream.shuffle(min(shuffle_buffer, len(positions)), seed=seed, reshuffle_each_iteration=True)
    return stream.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
