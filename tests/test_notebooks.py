"""The notebooks run top to bottom (executed once, on TensorFlow, to keep the suite short)."""

import pathlib

import pytest

import keras

NOTEBOOKS = sorted((pathlib.Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="notebooks execute once, under TensorFlow"
)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")  # the kernel inherits the environment
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    errors = [
        o for cell in notebook.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"
    ]
    assert not errors
    assert (tmp_path / "outputs" / "quickstart" / "saved_model").is_dir()
    assert (tmp_path / "outputs" / "quickstart" / "cc_mobilenet_v1.tflite").is_file()
    # write_routing_plots draws the paper's Figs. 4-7: five PNGs (docs/condconv.md lists them).
    assert len(list((tmp_path / "outputs" / "quickstart" / "plots").glob("*.png"))) == 5
