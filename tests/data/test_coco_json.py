"""The COCO-JSON reader: semantic masks against literal references (a synthetic COCO folder whose
masks are known exactly, and a real coco128 polygon against a point-in-polygon count)."""

import json

import numpy as np
import pytest
import tensorflow as tf
from matplotlib.path import Path

from keras_routing.data import CocoJson, coco_segmentation
from keras_routing.data.coco_json import split_indices

HEIGHT, WIDTH = 16, 20


def _square(x0, y0, x1, y1):
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


@pytest.fixture
def synthetic(tmp_path):
    """Two 16x20 images; the first holds a 12x12 square of category 18, a 4x4 square of category
    90 inside it, and a crowd RLE 4x4 rectangle of category 1 in the top-right corner."""
    (tmp_path / "train").mkdir()
    (tmp_path / "annotations").mkdir()
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(2, HEIGHT, WIDTH, 3), dtype=np.uint8)
    for i in range(2):
        tf.io.write_file(str(tmp_path / "train" / f"{i}.png"), tf.io.encode_png(pixels[i]))
    # Column-major RLE: rows 0-3 of columns 16-19 (pixel index column * HEIGHT + row).
    crowd = {"size": [HEIGHT, WIDTH], "counts": [16 * HEIGHT, 4, 12, 4, 12, 4, 12, 4, 12]}
    data = {
        "images": [
            {"id": 7, "file_name": "0.png", "height": HEIGHT, "width": WIDTH},
            {"id": 3, "file_name": "1.png", "height": HEIGHT, "width": WIDTH},
        ],
        "categories": [
            {"id": 90, "name": "toothbrush"},
            {"id": 1, "name": "person"},
            {"id": 18, "name": "dog"},
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 7,
                "category_id": 90,
                "segmentation": _square(4, 4, 8, 8),
                "area": 16.0,
                "iscrowd": 0,
            },
            {
                "id": 2,
                "image_id": 7,
                "category_id": 18,
                "segmentation": _square(2, 2, 14, 14),
                "area": 144.0,
                "iscrowd": 0,
            },
            {"id": 3, "image_id": 7, "category_id": 1, "segmentation": crowd, "area": 16.0, "iscrowd": 1},
        ],
    }
    (tmp_path / "annotations" / "instances_train.json").write_text(json.dumps(data))
    expected = np.zeros((HEIGHT, WIDTH), np.int32)
    expected[2:14, 2:14] = 2  # dog: category 18 is the second id in ascending order
    expected[4:8, 4:8] = 3  # toothbrush (id 90, third) is smaller: it wins where they overlap
    expected[0:4, 16:20] = 1  # person (id 1), the crowd region
    return tmp_path, pixels, expected


def test_synthetic_masks_are_the_known_squares(synthetic):
    path, pixels, expected = synthetic
    coco = CocoJson(path / "annotations" / "instances_train.json")
    assert coco.category_ids == [1, 18, 90] and coco.num_classes == 4
    assert coco.class_names == ["background", "person", "dog", "toothbrush"]
    np.testing.assert_array_equal(coco.semantic_mask(7), expected)
    without_crowd = expected.copy()
    without_crowd[0:4, 16:20] = 0
    np.testing.assert_array_equal(coco.semantic_mask(7, include_crowd=False), without_crowd)
    np.testing.assert_array_equal(coco.semantic_mask(3), np.zeros((HEIGHT, WIDTH)))

    # The pipeline at the images' own size: the masks exactly, the pixels in [0, 1].
    images, masks = next(iter(coco_segmentation(path, "train", (HEIGHT, WIDTH), batch_size=2, shuffle=False)))
    assert images.dtype == tf.float32 and masks.dtype == tf.int32
    np.testing.assert_array_equal(masks.numpy(), np.stack([expected, np.zeros_like(expected)]))
    np.testing.assert_allclose(images.numpy(), pixels / 255.0, atol=1e-6)
    # Halved: nearest neighbour with half-pixel centres takes source pixel 2i + 1, never a blend.
    (_, small), *rest = list(coco_segmentation(path, "train[:1]", (8, 10), batch_size=4))
    assert not rest and small.shape == (1, 8, 10)
    np.testing.assert_array_equal(small.numpy()[0], expected[1::2, 1::2])


def test_splits_and_bad_input(synthetic, tmp_path):
    for split, expected in [
        ("train", list(range(10))),
        ("train[:3]", [0, 1, 2]),
        ("train[7:]", [7, 8, 9]),
        ("train[-2:]", [8, 9]),
        ("train[:50%]", [0, 1, 2, 3, 4]),
        ("train[80%:]", [8, 9]),
    ]:
        assert split_indices(split, 10) == ("train", expected)
    path, _, _ = synthetic
    with pytest.raises(ValueError, match="split"):
        coco_segmentation(path, "train[1:2:3]")
    with pytest.raises(ValueError, match="selects no images"):
        coco_segmentation(path, "train[5:]")
    with pytest.raises(ValueError, match="annotations"):
        coco_segmentation(path, "val")
    data = json.loads((path / "annotations" / "instances_train.json").read_text())
    data["annotations"][0]["category_id"] = 5
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="category 5"):
        CocoJson(bad, images=path / "train")


def test_coco128_polygon_matches_a_point_in_polygon_count(shared_data):
    """Image 42 of coco128 holds one annotation (a dog, one polygon): its mask is, within 2%,
    the pixels whose centres lie inside the polygon (matplotlib's test) and the json's area;
    every image's classes are those of its annotations under the ascending-id numbering."""
    folder = shared_data / "coco128"
    data = json.loads((folder / "annotations" / "instances_train2017.json").read_text())
    coco = CocoJson(folder / "annotations" / "instances_train2017.json")
    contiguous = {c: i + 1 for i, c in enumerate(sorted(c["id"] for c in data["categories"]))}
    assert coco.num_classes == 81 and len(contiguous) == 80

    (annotation,) = [a for a in data["annotations"] if a["image_id"] == 42]
    record = next(r for r in data["images"] if r["id"] == 42)
    h, w = record["height"], record["width"]
    polygon = np.asarray(annotation["segmentation"][0]).reshape(-1, 2)
    centres = np.stack(np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5), -1).reshape(-1, 2)
    inside = Path(polygon).contains_points(centres).reshape(h, w)
    mask = coco.semantic_mask(42)
    ours = mask == contiguous[annotation["category_id"]]
    assert set(np.unique(mask)) == {0, contiguous[18]}
    assert abs(ours.sum() - annotation["area"]) / annotation["area"] < 0.02
    assert abs(ours.sum() - inside.sum()) / inside.sum() < 0.02
    assert (ours & inside).sum() / (ours | inside).sum() > 0.97

    by_image = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], set()).add(contiguous[a["category_id"]])
    stream = coco_segmentation(folder, "train2017", 64, batch_size=32, shuffle=False)
    masks = np.concatenate([m.numpy() for _, m in stream])
    assert masks.shape == (128, 64, 64)
    for record, m in zip(data["images"], masks):
        assert set(np.unique(m)) - {0} <= by_image.get(record["id"], set())
    # Resizing keeps the dog's share of the image (nearest neighbour, no blending).
    dog = masks[[r["id"] for r in data["images"]].index(42)]
    np.testing.assert_allclose((dog == contiguous[18]).mean(), ours.mean(), atol=0.02)
