"""Seeds for the tests that train and then assert on the outcome, and a way to report the outcome.

The slow seed sweep (``tests/test_seed_sweep.py``) reruns those tests in fresh processes with
``KERAS_ROUTING_TEST_SEED`` set to other seeds, with oneDNN off and on one thread, and reads back
what each reported with ``record`` to show the spread. Outside the sweep ``SEED`` is 0 and
``record`` prints nothing.
"""

import os

SEED = int(os.environ.get("KERAS_ROUTING_TEST_SEED", "0"))
_SWEEP = bool(os.environ.get("KERAS_ROUTING_SWEEP"))


def record(name, value):
    """Report an outcome the sweep collects (a line ``SWEEP <name> <value>`` on stdout)."""
    if _SWEEP:
        print(f"\nSWEEP {name} {float(value):.6g}", flush=True)  # the sweep runs pytest with -s
