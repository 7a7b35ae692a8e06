"""``model.fit`` that survives interruption: backups every few steps, resumption at the exact step.

Keras's ``BackupAndRestore`` saves mid-epoch but resumes at the start of the interrupted epoch,
so the batches it had already trained on are trained on twice. ``fit_resumable`` resumes at the
step the last backup was taken: the weights and optimizer state (step counter included) and the
random-generator states of dropout and friends are restored, and the data stream, whose epoch
``e`` is shuffled from ``(seed, e)`` alone (``keras_routing.data.image_classification(...,
epochs=n)``), is skipped to that step. With deterministic data the resumed run ends with the
same weights as an uninterrupted one (tested).
"""

import json
import os
import pathlib

import numpy as np

import keras


def _seed_states(model):
    """The state variables of every ``keras.random.SeedGenerator`` in the model (dropout, noise);
    ``save_weights`` leaves them out. (On PyTorch, unseeded layers draw from torch's global
    generator instead, whose state the backup saves too.)"""
    return [v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")]


class StepBackup(keras.callbacks.Callback):
    """Saves everything training needs to go on, every ``every`` steps and at each epoch end.

    Files go to ``directory`` (``backup.weights.h5`` with the optimizer, ``seeds.npz``,
    ``state.json``), each written to a temporary name and renamed, so that a kill during a save
    leaves the previous backup intact.
    """

    def __init__(self, directory, every=100):
        super().__init__()
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"StepBackup: `every` must be an integer >= 1, got {every!r}.")
        self.directory = pathlib.Path(directory)
        self.every = every
        self._pending_torch_rng = None
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
        # Counted here rather than read from the optimizer: on JAX every read of `self.model`
        # syncs the whole training state out of the compiled step.
        self._step = self._epoch_start + batch + 1
        if self._step % self.every == 0:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        self.save()

    def step(self):
        """The optimizer's step count (what a restore resumes from)."""
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def save(self):
        model = self.model  # on JAX, reading `self.model` syncs the training state into it
        self.directory.mkdir(parents=True, exist_ok=True)
        model.save_weights(str(self.directory / "tmp.weights.h5"), overwrite=True)
        seeds = {str(i): keras.ops.convert_to_numpy(v) for i, v in enumerate(_seed_states(model))}
        if keras.backend.backend() == "torch":
            import torch  # unseeded dropout on torch draws from torch's global generator

            seeds["torch_rng"] = torch.get_rng_state().numpy()
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
        return json.loads((self.directory / "state.json").read_text())["step"]

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
    **fit_kwargs,
):
    """``model.fit(dataset, epochs, steps_per_epoch, ...)`` with backups in ``backup_dir``.

    ``dataset`` holds all ``epochs`` back to back (``steps_per_epoch`` batches each), in an order
    that does not depend on how often it was iterated before. If ``backup_dir`` holds a backup,
    training resumes from it: the rest of the interrupted epoch first, then the remaining epochs.
    Returns a ``keras.callbacks.History`` over the epochs trained in this call. The backup is
    deleted once training completes (unless ``keep_backup``).
    """
    fit_kwargs.setdefault("shuffle", False)  # the dataset is shuffled already
    backup = StepBackup(backup_dir, backup_every)
    done = backup.restore(model)
    if done >= epochs * steps_per_epoch:
        raise ValueError(
            f"The backup in {backup_dir} is at step {done}, past the {epochs} x {steps_per_epoch} "
            "steps asked for: delete it or ask for more epochs."
        )
    epoch, in_epoch = divmod(done, steps_per_epoch)
    callbacks = [backup, *callbacks]
    history = keras.callbacks.History()
    history.set_model(model)
    history.history, history.epoch = {}, []

    def run(data, first_epoch, last_epoch, steps):
        if first_epoch >= last_epoch:
            return
        part = model.fit(data, initial_epoch=first_epoch, epochs=last_epoch, steps_per_epoch=steps,
                         callbacks=callbacks, **fit_kwargs)  # fmt: skip
        history.epoch += part.epoch
        for key, values in part.history.items():
            history.history.setdefault(key, []).extend(values)

    if in_epoch:  # the rest of the interrupted epoch, then whole epochs from the next one
        rest = steps_per_epoch - in_epoch
        run(dataset.skip(done).take(rest), epoch, epoch + 1, rest)
        epoch += 1
    run(dataset.skip(epoch * steps_per_epoch), epoch, epochs, steps_per_epoch)
    if not keep_backup:
        backup.delete()
    return history
