"""The early-exit DenseNet of "Deep networks with probabilistic gates" (section 5, S2.4, Fig. 9):
a CIFAR DenseNet-BC whose layers each have a probabilistic bypass gate used as a mask (a skipped
layer outputs zeros, concatenated as usual) and, at the end of dense blocks 1 and 2, an exit
gate with an intermediate classifier.

    model = keras_routing.zoo.gated_densenet_cifar(depth=100, growth_rate=12)
    model.compile()                      # Adam, sparse categorical cross-entropy, accuracy
    model.fit(x, y)                      # logs exit_target_loss_exit_fraction_0 .. _2
    report = keras_routing.zoo.gated_densenet.exit_report(model, x_test, y_test)

The model is an ``EarlyExitTask`` whose prediction passes through a ``GateTargetLoss`` over every
layer gate (per-gate const-quad, target .9) and an ``ExitTargetLoss`` over both exit gates
(per-gate const-quad, at least .3 exiting), and which adds each classifier's cross-entropy on
every example (deep supervision, MSDNet's), so a plain ``fit`` trains it end to end. The nesting
(``exit1`` holds ``exit1_rest``, which holds ``exit2``) is what lets an example that exits skip
everything after its exit at inference.
"""

import numpy as np
from keras import ops

from keras_routing.layers.early_exit import EarlyExit, ExitTargetLoss, first_exit
from keras_routing.layers.gated_residual import GatedResidual, GateTargetLoss
from keras_routing.losses import TARGET_RATE_LOSSES
from keras_routing.models.backbones.densenet_cifar import CLASSIFIER_WIDTH, densenet_cifar_backbone
from keras_routing.models.conditioners import EarlyExitConditioner
from keras_routing.models.early_exit_task import EarlyExitTask
from keras_routing.validation import number
from keras_routing.zoo.papers import PROBABILISTIC_GATES
from keras_routing.zoo.registry import register

__all__ = ["exit_report", "gated_densenet_cifar"]


@register("gated_densenet_cifar", preprocessing="mobilenet", family="gates", paper=PROBABILISTIC_GATES)
def gated_densenet_cifar(
    depth=100,
    growth_rate=12,
    bottleneck=True,
    compression=0.5,
    layer_gates=True,
    gate="dependent",
    layer_target_rate=0.9,
    layer_loss="per_gate_const_quad",
    layer_loss_weight=1.0,
    exit_target_rate=0.3,
    exit_loss_weight=1.0,
    classifier_loss_weight=1.0,
    exit_gate_width=128,
    exit_classifier_width=CLASSIFIER_WIDTH,
    temperature=1.0,
    threshold=0.5,
    exit_threshold=0.5,
    inference="threshold",
    input_shape=(32, 32, 3),
    classes=10,
    classifier_activation="softmax",
    bn_momentum=0.9,
    name=None,
):
    """The early-exit DenseNet (DenseNet-BC-100, k = 12, by default).

    ``layer_gates``: a bypass gate (``gate``: ``"dependent"``, AIG's, or ``"independent"``) on
    every dense layer, trained to ``layer_target_rate`` by ``layer_loss`` (a
    ``keras_routing.losses.TARGET_RATE_LOSSES`` name; the paper's per-gate const-quad at .9);
    ``exit_target_rate``: the per-gate const-quad exit target (the paper's .3); the weights of
    both losses; ``classifier_loss_weight`` the weight of the classifiers' summed cross-entropies
    on every example (deep supervision, ``EarlyExitTask``; 0: the chosen prediction's loss
    alone, which from scratch drifts to exiting everything early); ``exit_gate_width`` (S2.4: 128) and ``exit_classifier_width`` (MSDNet: 128)
    the exit gates' and intermediate classifiers' channels; ``temperature`` of every gate;
    ``threshold`` (layers) and ``exit_threshold`` (exits) under ``inference="threshold"``;
    ``inference`` one of ``"threshold"``, ``"stochastic"``, ``"always_on"`` (never exit, run
    every layer). Other arguments as for the DenseNet backbone
    (``keras_routing.models.backbones.densenet_cifar``).
    """
    number(exit_target_rate, "exit_target_rate", at_least=0, at_most=1)
    number(layer_target_rate, "layer_target_rate", at_least=0, at_most=1)
    number(exit_threshold, "exit_threshold", at_least=0, at_most=1)
    if layer_loss not in TARGET_RATE_LOSSES:
        raise ValueError(f"`layer_loss` must be one of {', '.join(TARGET_RATE_LOSSES)}, got {layer_loss!r}.")
    if not isinstance(layer_gates, bool):
        raise ValueError(f"`layer_gates` must be True or False, got {layer_gates!r}.")  # noqa: TRY004 (the project's convention)
    conditioner = EarlyExitConditioner(
        gate=gate,
        temperature=temperature,
        threshold=threshold,
        inference=inference,
        which=None if layer_gates else (lambda site: False),
        exit_width=exit_gate_width,
        exit_threshold=exit_threshold,
        exit_temperature=temperature,
    )
    backbone = densenet_cifar_backbone(
        depth=depth,
        growth_rate=growth_rate,
        bottleneck=bottleneck,
        compression=compression,
        conditioner=conditioner,
        input_shape=input_shape,
        classes=classes,
        classifier_activation=classifier_activation,
        exit_classifier_width=exit_classifier_width,
        bn_momentum=bn_momentum,
    )
    outputs = backbone.output
    if conditioner.gates:
        outputs = GateTargetLoss(
            layer_target_rate, layer_loss, weight=layer_loss_weight, name="layer_target_loss"
        )([outputs, *conditioner.gates])
    outputs = ExitTargetLoss(exit_target_rate, weight=exit_loss_weight, name="exit_target_loss")(
        [outputs, *conditioner.exits]
    )
    return EarlyExitTask(
        backbone.input,
        outputs,
        classifier_loss_weight=classifier_loss_weight,
        from_logits=classifier_activation in (None, "linear"),
        name=name or f"gated_densenet{depth}_cifar",
    )


def _levels(model):
    """The nesting of an early-exit model, outermost first: ``(graph, gated layers, dense
    layers, EarlyExit or None)`` per level (a level's graph holds one dense block and its exit)."""
    levels, graph = [], model
    while True:
        gated = [layer for layer in graph.layers if isinstance(layer, GatedResidual)]
        dense = [layer for layer in graph.layers if layer.name.endswith("_concat")]
        exits = [layer for layer in graph.layers if isinstance(layer, EarlyExit)]
        levels.append((graph, gated, dense, exits[0] if exits else None))
        if not exits:
            return levels
        graph = exits[0].rest


def _run(function, features, batch_size):
    """``function(features)`` in inference, batch by batch, as a list of numpy arrays (one per
    output). Eager calls: the probes are built per report, and compiling each costs more."""
    chunks = []
    for i in range(0, len(features), batch_size):
        out = function(ops.convert_to_tensor(features[i : i + batch_size]), training=False)
        out = out if isinstance(out, (list, tuple)) else [out]
        chunks.append([np.asarray(ops.convert_to_numpy(t)) for t in out])
    return [np.concatenate(parts) for parts in zip(*chunks)]


def exit_report(model, x, y, batch_size=256):
    """The paper's Fig. 9 for an early-exit model on ``(x, y)``, in the model's inference mode.

    Every classifier runs on every example here (the rates and errors need them), while the
    decisions are the model's: an example is answered by the first classifier whose exit gate is
    open (the final one where none is). Returns a dict: ``classifiers``, one entry per classifier
    in order (the final one last) with ``name``, ``fraction`` (of the examples it answers),
    ``error_chosen`` (its error on those; NaN where none) and ``error_all`` (on every example);
    ``error``, the model's error; ``layer_fraction``, the mean over examples of the fraction of
    dense layers that ran (layers after an example's exit count as not run, a closed layer gate
    too); ``examples``.
    """
    import keras

    y = np.asarray(y).reshape(-1)
    features = np.asarray(x)
    predictions, exits, names, ran, layers = [], [], [], [], 0
    for graph, gated, dense, early_exit in _levels(model):
        probes = [layer.output[1] for layer in gated]
        target = early_exit.input if early_exit is not None else _prediction(graph)
        outputs = _run(keras.Model(graph.input, [*probes, target]), features, batch_size)
        gates = [np.asarray(z).reshape(len(features), -1).max(-1) for z in outputs[:-1]]
        run = np.sum(gates, axis=0) if gates else np.zeros(len(features))
        ran.append(run + (len(dense) - len(gated)))
        layers += len(dense)
        if early_exit is None:
            predictions.append(np.asarray(outputs[-1]))
            names.append("final")
            break
        features = np.asarray(outputs[-1])
        exits.append(_run(early_exit.exits, features, batch_size)[0][:, 0] > 0)
        predictions.append(_run(early_exit.classifier, features, batch_size)[0])
        names.append(early_exit.name)
    chosen = np.asarray(ops.convert_to_numpy(first_exit(np.stack(exits, axis=1).astype("float32")))) > 0
    answer = np.argmax(chosen, axis=1)
    wrong = np.stack([p.argmax(-1) != y for p in predictions], axis=1)
    classifiers = []
    for i, name in enumerate(names):
        mine = answer == i
        classifiers.append(
            {
                "name": name,
                "fraction": float(mine.mean()),
                "error_chosen": float(wrong[mine, i].mean()) if mine.any() else float("nan"),
                "error_all": float(wrong[:, i].mean()),
            }
        )
    reached = answer[:, None] >= np.arange(len(names))[None]  # levels each example ran
    layer_fraction = (np.stack(ran, axis=1) * reached).sum(1) / max(layers, 1)
    return {
        "classifiers": classifiers,
        "error": float(wrong[np.arange(len(y)), answer].mean()),
        "layer_fraction": float(layer_fraction.mean()),
        "examples": len(y),
    }


def _prediction(graph):
    outputs = graph.outputs
    return outputs[0]


def format_report(report):
    """The report as the paper's Fig. 9 table (percentages), plus the overall figures."""
    rows = [("", *[c["name"] for c in report["classifiers"]])]
    rows.append(("examples classified (%)", *[f"{100 * c['fraction']:.2f}" for c in report["classifiers"]]))
    rows.append(("error on all (%)", *[f"{100 * c['error_all']:.2f}" for c in report["classifiers"]]))
    rows.append(("error on chosen (%)", *[f"{100 * c['error_chosen']:.2f}" for c in report["classifiers"]]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.append(
        f"overall error {100 * report['error']:.2f}%, mean fraction of layers run "
        f"{100 * report['layer_fraction']:.1f}% ({report['examples']} examples)"
    )
    return "\n".join(lines)
