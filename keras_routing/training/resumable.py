"""``model.fit`` that survives interruption: backups every few steps, resumption at the exact step.

Keras's ``BackupAndRestore`` saves mid-epoch but resumes at the start of the interrupted epoch,
so the batches it had already trained on are trained on twice. ``fit_resumable`` resumes at the
step the last backup was taken: the weights and optimizer state (step counter included) and the
random-generator states of dropout and friends are restored, and the data stream, whose epoch
``e`` is shuffled from ``(seed, e)`` alone (``keras_routing.data.image_classification(...,
epochs=n)``), is skipped to that step. With deterministic data the resumed run ends with the
same weights as an uninterrupted one (tested).

The logs stay one row per whole epoch: a mid-epoch backup also holds the running totals of the
loss and metrics, which the resumed epoch adds to its own, so its logs (``history.csv``,
TensorBoard, the returned ``History``) cover every step of the epoch, as an uninterrupted run's
do. The backup at an epoch's end is taken after every other callback has seen that epoch's end
(validated and logged it), so an epoch is either logged and backed up as done, or resumed and
logged once.
"""

import json
import os
import pathlib

import numpy as np

import keras

from keras_routing.validation import integer


def _seed_states(model):
    """The state variables of every ``keras.random.SeedGenerator`` in the model (dropout, noise);
    ``save_weights`` leaves them out. (On PyTorch, unseeded layers draw from torch's global
    generator instead, whose state the backup saves too.)"""
    return [v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")]


class StepBackup(keras.callbacks.Callback):
    """Saves everything training needs to go on, every ``every`` steps and at each epoch end.

    Files go to ``directory`` (``backup.weights.h5`` with the optimizer, ``seeds.npz`` with the
    random-generator states and, mid-epoch, the metrics' running totals, ``state.json``), each
    written to a temporary name and renamed, so that a kill during a save leaves the previous
    backup intact. An epoch's last step is backed up at the epoch's end, after validation: put
    this callback last, so that the other callbacks have logged the epoch by then.
    """

    def __init__(self, directory, every=100):
        super().__init__()
        self.directory = pathlib.Path(directory)
        self.every = integer(every, "every", owner="StepBackup")
        self._pending_torch_rng = self._saved_torch_rng = None
        self._pending_metrics = None
        self._step = self._epoch_start = 0

    @property
    def _weights(self):
        return self.directory / "backup.weights.h5"

    def on_train_batch_begin(self, batch, logs=None):
        if self._pending_torch_rng is not None:
            import torch

            torch.set_rng_state(torch.from_numpy(self._pending_torch_rng))
            self._pending_torch_rng = None

    def on_train_begin(self, logs=None):
        self._step = self.step()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self._step

    def on_train_batch_end(self, batch, logs=None):
        if self._pending_metrics is not None:
            self._add_metric_totals()
        # Counted here rather than read from the optimizer: on JAX every read of `self.model`
        # syncs the whole training state out of the compiled step.
        self._step = self._epoch_start + batch + 1
        last = batch + 1 == (self.params or {}).get("steps")  # backed up at the epoch's end instead
        if self._step % self.every == 0 and not last:
            self.save(mid_epoch=True)

    def on_epoch_end(self, epoch, logs=None):
        self.save()

    def _add_metric_totals(self):
        """After the first step of an epoch resumed mid-way: add the running totals of its steps
        before the backup to its metrics, so that the epoch's logs cover all its steps. (Not
        before: fit resets the metrics at the epoch's begin, and on TensorFlow builds them in the
        first step.) The totals of Keras's metrics (means, sums, confusion counts) add up."""
        pending, self._pending_metrics = self._pending_metrics, None
        variables = self.model.metrics_variables
        if [tuple(v.shape) for v in variables] != [total.shape for total in pending]:
            return  # compiled with other metrics than the run backed up: those start afresh
        for variable, total in zip(variables, pending):
            variable.assign_add(keras.ops.convert_to_tensor(total, variable.dtype))

    def step(self):
        """The optimizer's step count (what a restore resumes from)."""
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def save(self, mid_epoch=False):
        """Back up now; ``mid_epoch``: with the metrics' running totals of the epoch so far."""
        model = self.model  # on JAX, reading `self.model` syncs the training state into it
        self.directory.mkdir(parents=True, exist_ok=True)
        model.save_weights(str(self.directory / "tmp.weights.h5"), overwrite=True)
        seeds = {str(i): keras.ops.convert_to_numpy(v) for i, v in enumerate(_seed_states(model))}
        if mid_epoch:
            metrics = model.metrics_variables
            seeds.update({f"metric_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(metrics)})
        if keras.backend.backend() == "torch":
            import torch  # unseeded dropout on torch draws from torch's global generator

            seeds["torch_rng"] = self._saved_torch_rng = torch.get_rng_state().numpy()
        np.savez(self.directory / "tmp_seeds.npz", **seeds)
        (self.directory / "tmp_state.json").write_text(json.dumps({"step": self.step()}))
        os.replace(self.directory / "tmp.weights.h5", self._weights)
        os.replace(self.directory / "tmp_seeds.npz", self.directory / "seeds.npz")
        os.replace(self.directory / "tmp_state.json", self.directory / "state.json")

    def restore(self, model):
        """Load the last backup into ``model`` (built and compiled); the step it was taken at, or 0."""
        if not (self.directory / "state.json").exists():
            return 0
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(str(self._weights))
        with np.load(self.directory / "seeds.npz") as seeds:
            for i, variable in enumerate(_seed_states(model)):
                variable.assign(seeds[str(i)])
            if "torch_rng" in seeds and keras.backend.backend() == "torch":
                # Set just before the first step: setting up fit draws from it too.
                self._pending_torch_rng = seeds["torch_rng"]
            metrics = sorted((k for k in seeds.files if k.startswith("metric_")), key=lambda k: int(k[7:]))
            self._pending_metrics = [seeds[k] for k in metrics] if metrics else None  # see _add_metric_totals
        return json.loads((self.directory / "state.json").read_text())["step"]

    def continue_in_next_fit(self):
        """Make the next ``fit`` with this callback go on from the last backup as the next epoch
        of the same ``fit`` would: on PyTorch, with torch's generator as it was then (ending a
        fit and setting up the next draw from it)."""
        self._pending_torch_rng = self._saved_torch_rng

    def delete(self):
        for name in ("backup.weights.h5", "seeds.npz", "state.json"):
            (self.directory / name).unlink(missing_ok=True)
        if self.directory.is_dir() and not any(self.directory.iterdir()):
            self.directory.rmdir()


def fit_resumable(
    model,
    dataset,
    *,
    epochs,
    steps_per_epoch,
    backup_dir,
    backup_every=100,
    callbacks=(),
    keep_backup=False,
    log=None,
    **fit_kwargs,
):
    """``model.fit(dataset, epochs, steps_per_epoch, ...)`` with backups in ``backup_dir``.

    ``dataset`` holds all ``epochs`` back to back (``steps_per_epoch`` batches each), in an order
    that does not depend on how often it was iterated before. If ``backup_dir`` holds a backup,
    training resumes from it: the rest of the interrupted epoch first, then the remaining epochs,
    and ``log`` (default: ``print``, unless ``verbose=0``) is given one line saying so. Returns a
    ``keras.callbacks.History`` over the epochs trained in this call, one entry per whole epoch
    (a resumed epoch's cover its steps before the interruption too). The backup is deleted once
    training completes (unless ``keep_backup``).
    """
    epochs = integer(epochs, "epochs", owner="fit_resumable")
    steps_per_epoch = integer(steps_per_epoch, "steps_per_epoch", owner="fit_resumable")
    fit_kwargs.setdefault("shuffle", False)  # the dataset is shuffled already
    if log is None and fit_kwargs.get("verbose", "auto") != 0:
        log = print
    backup = StepBackup(backup_dir, backup_every)
    done = backup.restore(model)
    if done >= epochs * steps_per_epoch:
        raise ValueError(
            f"The backup in {backup_dir} is at step {done}, past the {epochs} x {steps_per_epoch} "
            "steps asked for: delete it or ask for more epochs."
        )
    epoch, in_epoch = divmod(done, steps_per_epoch)
    if not in_epoch:
        backup._pending_metrics = None  # the epoch starts afresh (steps_per_epoch was changed)
    if done and log is not None:
        log(
            f"Resuming from {backup_dir} at epoch {epoch + 1} of {epochs}, step {in_epoch} of {steps_per_epoch}."
        )
    callbacks = [*callbacks, backup]  # last: its epoch-end backup follows the others' epoch end
    history = keras.callbacks.History()
    history.set_model(model)
    history.history, history.epoch = {}, []

    def run(data, first_epoch, last_epoch, steps):
        if first_epoch >= last_epoch:
            return
        part = model.fit(
            data,
            initial_epoch=first_epoch,
            epochs=last_epoch,
            steps_per_epoch=steps,
            callbacks=callbacks,
            **fit_kwargs,
        )
        history.epoch += part.epoch
        for key, values in part.history.items():
            history.history.setdefault(key, []).extend(values)

    if in_epoch:  # the rest of the interrupted epoch, then whole epochs from the next one
        rest = steps_per_epoch - in_epoch
        # Not `.take(rest)`: a stream that runs out is iterated anew at once, which on PyTorch
        # draws from torch's generator where an uninterrupted run does not.
        run(dataset.skip(done), epoch, epoch + 1, rest)
        backup.continue_in_next_fit()
        epoch += 1
    run(dataset.skip(epoch * steps_per_epoch), epoch, epochs, steps_per_epoch)
    if not keep_backup:
        backup.delete()
    return history
