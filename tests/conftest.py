import os
import pathlib

import pytest

import keras

from tests.seeds import SEED

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(SEED)
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared real data at {SHARED_DATA} (absent in a user's fresh clone)")
    return SHARED_DATA


def pytest_report_header(config):
    return f"keras backend: {keras.backend.backend()} (KERAS_BACKEND={os.environ.get('KERAS_BACKEND')})"


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
    """A TFDS data_dir holding the prepared embedded_digits (prepared once per session)."""
    from keras_routing.data import image_classification

    data_dir = tmp_path_factory.mktemp("tfds")
    image_classification("embedded_digits", "test", 28, 8, data_dir=str(data_dir), take=1)
    return str(data_dir)
