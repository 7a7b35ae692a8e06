"""``EarlyExitTask``: a classifier with early exits (``keras_routing.layers.EarlyExit``) trained
with deep supervision.

Its loss is the compiled loss of its prediction (the hard straight-through mix: what the exit
decisions choose, which trains the exit gates), the layers' ``add_loss`` terms (target rates) and,
in training, ``classifier_loss_weight`` times the sum over its classifiers of each one's
cross-entropy on every example of the batch: each exit's classifier and the final one (the
prediction of an innermost exit's rest). That sum is how MSDNet (Huang et al. 2018, whose
classifiers the paper uses) and BranchyNet (Teerapittayanon et al. 2016, whose exit placement it
follows) train their exits; without it a classifier learns only from the examples it answers and
training from scratch drifts to exiting everything early (``docs/gates.md``). ``fit`` needs the
labels; ``model.predict`` returns the prediction alone, as without exits.
"""

import keras
from keras import ops

from keras_routing.layers.early_exit import EarlyExit
from keras_routing.models.task import Task
from keras_routing.validation import number


def _early_exits(layer):
    return [
        inner
        for inner in layer._flatten_layers(include_self=False, recursive=True)
        if isinstance(inner, EarlyExit)
    ]


@keras.saving.register_keras_serializable(package="keras_routing")
class EarlyExitTask(Task):
    """A functional ``Task`` over a network with ``EarlyExit`` layers (see the module's doc).

    Args (besides the functional ``inputs``, ``outputs``, ``name``):
        classifier_loss_weight: the weight of the classifiers' summed cross-entropies (0: the
            prediction's loss alone).
        from_logits: whether the classifiers output logits (else probabilities, softmax).
    """

    def __init__(self, *args, classifier_loss_weight=1.0, from_logits=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.classifier_loss_weight = number(
            classifier_loss_weight, "classifier_loss_weight", at_least=0, owner="EarlyExitTask"
        )
        self.from_logits = bool(from_logits)

    def default_loss(self):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=self.from_logits)

    def default_metrics(self):
        return ["accuracy"]

    def supervised_predictions(self):
        """The predictions of every classifier on every example from the last training call, in no
        particular order (``[]`` outside training): each exit's classifier, and the rest of each
        exit that holds no further exit (the final classifier)."""
        predictions = []
        for layer in _early_exits(self):
            kept = layer.training_predictions()
            if kept is None:
                continue
            classifier, rest = kept
            predictions.append(classifier)
            if not _early_exits(layer.rest):
                predictions.append(rest)
        return predictions

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        predictions = self.supervised_predictions() if training else []
        if predictions and self.classifier_loss_weight and y is None:
            raise ValueError(
                f"{self.name}: deep supervision (classifier_loss_weight) needs the labels: call fit "
                "with targets y, or build the model with classifier_loss_weight=0."
            )
        total = super().compute_loss(x, y, y_pred, sample_weight, training=training)
        if not predictions or self.classifier_loss_weight == 0:
            return total
        supervised = ops.zeros((), "float32")
        for prediction in predictions:
            prediction = ops.cast(prediction, "float32")
            if len(y.shape) == len(prediction.shape):
                ce = keras.losses.categorical_crossentropy(
                    ops.cast(y, "float32"), prediction, from_logits=self.from_logits
                )
            else:
                ce = keras.losses.sparse_categorical_crossentropy(y, prediction, from_logits=self.from_logits)
            if sample_weight is not None:
                ce = ce * ops.reshape(ops.cast(sample_weight, "float32"), ops.shape(ce))
            supervised = supervised + ops.mean(ce)
        return total + self.classifier_loss_weight * supervised

    def get_config(self):
        return {
            **super().get_config(),
            "classifier_loss_weight": self.classifier_loss_weight,
            "from_logits": self.from_logits,
        }
