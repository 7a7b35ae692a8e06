"""Parameters and inference multiply-adds of a model, counted as the CondConv paper counts them.

    report = keras_routing.profile(model)                 # at the model's input shape
    report = keras_routing.profile(model, (224, 224, 3))  # at another input shape
    report = keras_routing.profile("cc_mobilenet_v1", width=0.5)  # a zoo model, built to count
    report.params, report.madds, report.layers, report.uncounted
    report.print()                                        # a per-layer table

Multiply-adds are those of convolutions and fully-connected layers for one example, as in the
MobileNet and CondConv papers: batch normalization (folded into the convolution at inference),
activations, additions and pooling count nothing. A CondConv layer costs one convolution with
the mixed kernel plus one multiply-add per expert per parameter to mix the kernel (and bias),
plus its routing function (its dense layers; the global pooling is free).

A layer this module does not know is listed in ``uncounted`` (and printed as such) rather than
silently counted as zero; its parameters are still counted.
"""

import dataclasses
import math

import keras

from keras_routing.layers import CondConv2D, CondDense, CondDepthwiseConv2D, Routing

# Layers with no multiply-adds by the papers' convention.
FREE_LAYERS = tuple(
    getattr(keras.layers, name)
    for name in (
        "InputLayer",
        "BatchNormalization",
        "LayerNormalization",
        "GroupNormalization",
        "ReLU",
        "LeakyReLU",
        "PReLU",
        "ELU",
        "Softmax",
        "Activation",
        "Add",
        "Subtract",
        "Multiply",
        "Average",
        "Maximum",
        "Minimum",
        "Concatenate",
        "Dropout",
        "SpatialDropout2D",
        "GaussianNoise",
        "Reshape",
        "Flatten",
        "Permute",
        "RepeatVector",
        "Identity",
        "ZeroPadding2D",
        "Cropping2D",
        "UpSampling2D",
        "Resizing",
        "Rescaling",
        "Normalization",
        "CenterCrop",
        "GlobalAveragePooling2D",
        "GlobalMaxPooling2D",
        "GlobalAveragePooling1D",
        "GlobalMaxPooling1D",
        "MaxPooling2D",
        "AveragePooling2D",
        "MaxPooling1D",
        "AveragePooling1D",
    )
)


@dataclasses.dataclass
class LayerCost:
    name: str
    kind: str
    output_shape: tuple
    params: int
    madds: int | None  # None: a layer this module cannot count


@dataclasses.dataclass
class Profile:
    params: int
    madds: int
    layers: list
    uncounted: list

    def table(self, title=None):
        """The per-layer costs as a ``rich.table.Table``."""
        from rich.table import Table

        table = Table(title=title)
        for column in ("layer", "type", "output", "params", "MAdds"):
            table.add_column(column, justify="right" if column in ("params", "MAdds") else "left")
        for row in self.layers:
            madds = "not counted" if row.madds is None else f"{row.madds:,}"
            table.add_row(row.name, row.kind, str(row.output_shape[1:]), f"{row.params:,}", madds)
        table.add_row("total", "", "", f"{self.params:,}", f"{self.madds:,}", style="bold")
        return table

    def print(self, title=None):
        from rich.console import Console

        console = Console()
        console.print(self.table(title))
        if self.uncounted:
            console.print(f"[yellow]Multiply-adds not counted for: {', '.join(self.uncounted)}")

    def __str__(self):
        text = f"{self.params / 1e6:.2f}M parameters, {self.madds / 1e6:.1f}M multiply-adds"
        if self.uncounted:
            text += f" (not counted: {', '.join(self.uncounted)})"
        return text


def _prod(values):
    return math.prod(int(v) for v in values)


def _conv_madds(layer, input_shape, output_shape):
    """Multiply-adds of a (possibly depthwise) convolution for one example."""
    kernel = _prod(layer.kernel_size)
    if isinstance(layer, (keras.layers.DepthwiseConv2D, CondDepthwiseConv2D)):
        return _prod(output_shape[1:]) * kernel
    groups = getattr(layer, "groups", 1)
    return _prod(output_shape[1:]) * kernel * input_shape[-1] // groups


def _dense_madds(input_shape, units):
    return _prod(input_shape[1:]) * units


def _routing_madds(routing, input_shape, context_shape=None):
    features = input_shape[-1] + (context_shape[-1] if context_shape is not None else 0)
    madds = 0
    if routing.hidden is not None:
        madds += features * routing.hidden_units
        features = routing.hidden_units
    return madds + features * routing.num_experts * (routing.per_channel_units or 1)


def _mixing_madds(layer):
    """One multiply-add per expert per parameter, to mix kernel and bias."""
    return _prod(layer.kernel.shape) + (_prod(layer.bias.shape) if layer.use_bias else 0)


def layer_madds(layer, input_shapes, output_shape):
    """Multiply-adds of one call of ``layer`` for one example; None if it cannot be counted."""
    x = input_shapes[0]
    if isinstance(layer, (CondConv2D, CondDepthwiseConv2D)):
        own = _routing_madds(layer.routing, x) if layer.routing is not None else 0
        return _conv_madds(layer, x, output_shape) + _mixing_madds(layer) + own
    if isinstance(layer, CondDense):
        own = _routing_madds(layer.routing, x) if layer.routing is not None else 0
        return _dense_madds(x, layer.units) + _mixing_madds(layer) + own
    if isinstance(layer, Routing):
        return _routing_madds(layer, x, input_shapes[1] if len(input_shapes) > 1 else None)
    if isinstance(layer, keras.layers.SeparableConv2D):
        depthwise = _prod(output_shape[1:3]) * x[-1] * layer.depth_multiplier * _prod(layer.kernel_size)
        return depthwise + _prod(output_shape[1:]) * x[-1] * layer.depth_multiplier
    if isinstance(
        layer, (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D, keras.layers.DepthwiseConv2D)
    ):
        return _conv_madds(layer, x, output_shape)
    if isinstance(layer, keras.layers.Dense):
        return _dense_madds(x, layer.units)
    if isinstance(layer, FREE_LAYERS):
        return 0
    return None


def _graph(model):
    """The functional graph behind ``model`` (a Sequential model keeps one inside)."""
    graph = getattr(model, "_functional", None) if isinstance(model, keras.Sequential) else model
    if not hasattr(graph, "_nodes_by_depth"):
        raise ValueError(
            f"profile: '{model.name}' is a subclassed model, whose graph cannot be read; "
            "profile a Functional or Sequential model."
        )
    return graph


def _walk(model, inputs, rows, uncounted, seen, prefix=""):
    """Run ``model``'s graph on symbolic ``inputs``, recording each layer call's cost."""
    functional = _graph(model)
    tensors = {id(ref): value for ref, value in zip(functional.inputs, keras.tree.flatten(inputs))}
    by_depth = functional._nodes_by_depth
    for node in (node for depth in sorted(by_depth, reverse=True) for node in by_depth[depth]):
        op = node.operation
        if op is None or node.is_input or any(id(t) not in tensors for t in node.input_tensors):
            continue
        args, kwargs = node.arguments.fill_in(tensors)
        if isinstance(op, keras.Model):
            outputs = _walk(
                op, args[0] if len(args) == 1 else args, rows, uncounted, seen, f"{prefix}{op.name}/"
            )
        else:
            outputs = op.compute_output_spec(*args, **kwargs)
            input_shapes = [tuple(t.shape) for t in keras.tree.flatten((args, kwargs)) if hasattr(t, "shape")]
            output_shape = tuple(keras.tree.flatten(outputs)[0].shape)
            madds = layer_madds(op, input_shapes, output_shape)
            name = prefix + op.name
            if madds is None:
                uncounted.append(f"{name} ({op.__class__.__name__})")
            params = 0 if id(op) in seen else op.count_params() if isinstance(op, keras.layers.Layer) else 0
            seen.add(id(op))
            rows.append(LayerCost(name, op.__class__.__name__, output_shape, params, madds))
        for ref, value in zip(node.outputs, keras.tree.flatten(outputs)):
            tensors[id(ref)] = value
    return (
        [tensors[id(t)] for t in functional.outputs]
        if len(functional.outputs) > 1
        else tensors[id(functional.outputs[0])]
    )


def profile(model, input_shape=None, **factory_arguments):
    """Parameters and per-example inference multiply-adds of ``model``, per layer and in total.

    ``model``: a ``keras.Model``, or the name of a zoo model, which is built with
    ``factory_arguments`` (``width=0.5``, ``classes=10``, ...; the factory's defaults otherwise)
    and ``input_shape`` as the command's ``profile`` does.
    ``input_shape``: one example's shape, e.g. ``(224, 224, 3)``; by default the model's own
    (which must then be fully known).
    """
    if isinstance(model, str):
        from keras_routing import zoo

        model = zoo.get(model, input_shape=input_shape, **factory_arguments)
    elif factory_arguments:
        raise ValueError(
            f"profile: factory arguments {sorted(factory_arguments)} apply to a zoo model's name only, "
            "not to a built model."
        )
    if not isinstance(model, keras.Model):
        raise ValueError(f"profile: `model` must be a keras.Model or a zoo model's name, got {model!r}.")
    functional = _graph(model)
    shapes = [tuple(t.shape[1:]) for t in functional.inputs]
    if input_shape is not None:
        if len(shapes) != 1:
            raise ValueError("profile: `input_shape` can only be given for a model with one input.")
        shapes = [tuple(input_shape)]
    for shape in shapes:
        if any(size is None for size in shape):
            raise ValueError(
                f"profile: the input shape {shape} has unknown sizes; pass `input_shape=` "
                "(e.g. (224, 224, 3))."
            )
    inputs = [keras.KerasTensor((1,) + shape, dtype=t.dtype) for shape, t in zip(shapes, functional.inputs)]
    rows, uncounted = [], []
    _walk(functional, inputs if len(inputs) > 1 else inputs[0], rows, uncounted, set())
    madds = sum(row.madds for row in rows if row.madds is not None)
    return Profile(params=model.count_params(), madds=madds, layers=rows, uncounted=uncounted)
