"""Run by tests/test_training.py in a fresh process: a short resumable training that, with
``--kill-at N``, SIGKILLs its own process after step N (no cleanup, no exception handling: what
a pre-empted machine does). Saves the final weights to ``<backup dir>/final.npz``."""

import argparse
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import keras  # noqa: E402

from keras_routing.training import fit_resumable  # noqa: E402
from tests.test_training import EPOCHS, STEPS, build, stream  # noqa: E402


class KillAt(keras.callbacks.Callback):
    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)) == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


parser = argparse.ArgumentParser()
parser.add_argument("backup_dir")
parser.add_argument("data_dir")
parser.add_argument("--kill-at", type=int)
args = parser.parse_args()
model = build()
callbacks = [KillAt(args.kill_at)] if args.kill_at else []
fit_resumable(
    model,
    stream(args.data_dir),
    epochs=EPOCHS,
    steps_per_epoch=STEPS,
    backup_dir=args.backup_dir,
    backup_every=4,
    callbacks=callbacks,
    verbose=0,
)
os.makedirs(args.backup_dir, exist_ok=True)  # the backup, and its folder, are gone once training completes
np.savez(os.path.join(args.backup_dir, "final.npz"), *[keras.ops.convert_to_numpy(w) for w in model.weights])
