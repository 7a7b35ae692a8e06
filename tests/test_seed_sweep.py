"""The seed sweep (slow, outside the default run): every test that trains and then asserts on
the outcome, rerun in fresh processes for 10 seeds, once on one thread and (TensorFlow) once
with oneDNN's kernels off. Other CPUs round differently and land a seed elsewhere; these tests
must hold anyway.

    KERAS_BACKEND=<backend> .venv/bin/python -m pytest -m slow tests/test_seed_sweep.py -s

It prints, per recorded outcome (``tests.seeds.record``), the spread over all 12 runs; the swept
tests' docstrings quote it. Tests that train and then compare two computations of the same model
(resumption, export parity, data parallelism against one device) promise equality, not an
outcome of training, and are not swept.
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

import keras

ROOT = pathlib.Path(__file__).resolve().parents[1]
SWEPT = [
    "tests/test_export.py::test_quantizing_condconv_costs_no_more_than_quantizing_its_plain_twin",
    "tests/zoo/test_upcycle.py::test_upcycled_model_predicts_what_the_trained_baseline_predicts",
    "tests/zoo/test_upcycle.py::test_upcycled_experts_differ_and_learn_differently",
    "tests/data/test_pipelines.py::test_fit_consumes_the_pipeline",
]
ONE_THREAD = {
    "OMP_NUM_THREADS": "1",  # PyTorch and oneDNN
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}
VARIANTS = [(f"seed {seed}", {"KERAS_ROUTING_TEST_SEED": str(seed)}) for seed in range(10)] + [
    ("one thread", ONE_THREAD),
]
if keras.backend.backend() == "tensorflow":  # the variable switches TensorFlow's kernels only
    VARIANTS.append(("oneDNN off", {"TF_ENABLE_ONEDNN_OPTS": "0"}))


def _run(extra_env, one_thread):
    env = {**os.environ, "KERAS_ROUTING_SWEEP": "1", "TF_CPP_MIN_LOG_LEVEL": "2", **extra_env}
    command = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", *SWEPT]
    if one_thread and shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]  # one core, whatever a runtime counts
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=1800)


@pytest.mark.slow
def test_outcome_tests_hold_over_seeds_threads_and_kernels(capsys):
    outcomes, failures = {}, []
    for label, extra_env in VARIANTS:
        result = _run(extra_env, one_thread=label == "one thread")
        summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
        if result.returncode != 0:
            failures.append(f"{label}: {summary}\n{result.stdout[-3000:]}")
        for name, value in re.findall(r"^SWEEP (\S+) (\S+)$", result.stdout, re.MULTILINE):
            outcomes.setdefault(name, []).append((float(value), label))
        with capsys.disabled():
            print(f"\n{keras.backend.backend()} {label}: {summary}", flush=True)
    with capsys.disabled():
        print(f"\nspread over {len(VARIANTS)} runs ({keras.backend.backend()}):")
        for name, values in sorted(outcomes.items()):
            low, high = min(values), max(values)
            print(f"  {name}: {low[0]:.4g} ({low[1]}) .. {high[0]:.4g} ({high[1]}), {len(values)} runs")
    assert not failures, "\n\n".join(failures)
