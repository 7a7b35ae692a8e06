"""Data parallelism through Keras: the same global batch gives the same losses on two devices."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import keras

SCRIPT = pathlib.Path(__file__).with_name("distributed_run.py")


@pytest.mark.skipif(
    keras.backend.backend() == "torch", reason="Keras's distribution API does not cover PyTorch"
)
def test_two_virtual_devices_match_one():
    # A fresh process: the virtual devices must be set up before the backend starts.
    root = SCRIPT.parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600, cwd=root
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    np.testing.assert_allclose(report["parallel"], report["single"], rtol=1e-4)
    assert report["single"][-1] < report["single"][0]


def test_torch_is_refused_with_a_clear_error():
    if keras.backend.backend() != "torch":
        pytest.skip("the refusal is for PyTorch")
    from keras_routing.training import data_parallel

    with pytest.raises(ValueError, match="PyTorch"):
        data_parallel()
