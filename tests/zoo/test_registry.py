"""The zoo's registry: family, task, preprocessing and paper of every model."""

import dataclasses
import pathlib

import pytest

from keras_routing import zoo

PAPERS = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "papers"

EXPECTED = {
    "mobilenet_v1": ("plain", "mobilenet", "arXiv:1704.04861"),
    "mobilenet_v2": ("plain", "mobilenet", "arXiv:1801.04381"),
    "resnet50": ("plain", "caffe", "arXiv:1512.03385"),
    "cc_mobilenet_v1": ("condconv", "mobilenet", "condconv-soft-conditional-computation.md"),
    "cc_mobilenet_v2": ("condconv", "mobilenet", "condconv-soft-conditional-computation.md"),
    "cc_resnet50": ("condconv", "caffe", "condconv-soft-conditional-computation.md"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_info_records_family_task_preprocessing_and_paper(name):
    family, preprocessing, paper = EXPECTED[name]
    info = zoo.info(name)
    assert isinstance(info, zoo.ModelInfo)
    assert (info.name, info.family, info.task, info.preprocessing) == (
        name,
        family,
        "classification",
        preprocessing,
    )
    assert paper in info.paper
    assert info.factory is getattr(zoo, name) is zoo.factory(name)
    assert zoo.preprocessing(name) == preprocessing
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.family = "gates"


def test_papers_are_files_of_the_shared_papers():
    if not PAPERS.is_dir():
        pytest.skip(f"needs the shared papers at {PAPERS} (absent in a user's fresh clone)")
    for name in zoo.list_models():
        paper = zoo.info(name).paper
        if paper.endswith(".md"):
            assert (PAPERS / paper).is_file(), paper


def test_list_models_by_family():
    assert zoo.list_models(family="condconv") == ["cc_mobilenet_v1", "cc_mobilenet_v2", "cc_resnet50"]
    assert set(zoo.list_models(family="plain")) >= {"mobilenet_v1", "mobilenet_v2", "resnet50"}
    assert "cc_resnet50" not in zoo.list_models(family="plain")
    assert zoo.list_models() == sorted(zoo.list_models())
    by_family = sorted(name for family in zoo.families() for name in zoo.list_models(family=family))
    assert by_family == zoo.list_models()  # every model in exactly one family
    with pytest.raises(ValueError, match="`family` must be one of"):
        zoo.list_models(family="moe")


def test_families_in_the_registrys_order():
    families = zoo.families()
    assert families[:2] == ["plain", "condconv"]
    assert set(families) <= set(zoo.FAMILIES)
    assert families == [family for family in zoo.FAMILIES if family in families]
    assert all(zoo.list_models(family=family) for family in families)


def test_register_checks_its_arguments():
    def factory():
        raise AssertionError("not built")

    with pytest.raises(ValueError, match="`family`"):
        zoo.register("new_model", family="condcov")
    with pytest.raises(ValueError, match="`task`"):
        zoo.register("new_model", family="gates", task="regression")
    with pytest.raises(ValueError, match="registered already"):
        zoo.register("mobilenet_v1", family="plain", paper="x")(factory)
    assert "new_model" not in zoo.list_models()
    assert zoo.factory("mobilenet_v1") is zoo.mobilenet_v1


def test_unknown_model_names_the_choices():
    with pytest.raises(ValueError, match="Unknown zoo model 'mobilenet_v9'.*cc_mobilenet_v1"):
        zoo.info("mobilenet_v9")
    with pytest.raises(ValueError, match="Unknown zoo model"):
        zoo.preprocessing("mobilenet_v9")
