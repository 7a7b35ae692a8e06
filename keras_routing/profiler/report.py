"""The profile of a model: its graph run symbolically at batch 1, each layer call costed by its rule."""

import dataclasses

import numpy as np

import keras

from keras_routing.profiler.rules import find_rate_rule, layer_cost
from keras_routing.transforms import _graph


@dataclasses.dataclass
class LayerCost:
    name: str
    kind: str
    output_shape: tuple
    params: int
    madds: int | None  # None: a layer no rule can count
    expected_madds: float | None = None  # given the layer's rate; None where madds is None
    rate: object = None  # the rate its expected cost was computed with; None: none known


@dataclasses.dataclass
class Profile:
    params: int
    madds: int
    layers: list
    uncounted: list
    expected_madds: float | None = None  # with the measured or given rates; madds without
    rates: dict = dataclasses.field(default_factory=dict)  # {layer name: rate} used

    def table(self, title=None):
        """The per-layer costs as a ``rich.table.Table``."""
        from rich.table import Table

        expected = bool(self.rates)
        numbers = ("params", "MAdds", "expected MAdds")
        table = Table(title=title)
        for column in ("layer", "type", "output", *numbers[: 3 if expected else 2]):
            table.add_column(column, justify="right" if column in numbers else "left")
        for row in self.layers:
            madds = "not counted" if row.madds is None else f"{row.madds:,}"
            cells = [row.name, row.kind, str(row.output_shape[1:]), f"{row.params:,}", madds]
            if expected:
                cells.append("" if row.expected_madds is None else f"{row.expected_madds:,.0f}")
            table.add_row(*cells)
        total = ["total", "", "", f"{self.params:,}", f"{self.madds:,}"]
        table.add_row(*total, *([f"{self.expected_madds:,.0f}"] if expected else []), style="bold")
        return table

    def print(self, title=None):
        from rich.console import Console

        console = Console()
        console.print(self.table(title))
        if self.uncounted:
            console.print(f"[yellow]Multiply-adds not counted for: {', '.join(self.uncounted)}")

    def __str__(self):
        text = f"{self.params / 1e6:.2f}M parameters, {self.madds / 1e6:.1f}M multiply-adds"
        if self.rates:
            text += f" ({self.expected_madds / 1e6:.1f}M expected at the measured rates)"
        if self.uncounted:
            text += f" (not counted: {', '.join(self.uncounted)})"
        return text


def _functional(model):
    graph = _graph.functional_graph(model)
    if graph is None:
        raise ValueError(
            f"profile: '{model.name}' is a subclassed model, whose graph cannot be read; "
            "profile a Functional or Sequential model."
        )
    return graph


def _walk(graph, inputs, rows, uncounted, seen, rates, prefix=""):
    """Run ``graph`` on symbolic ``inputs``, recording each layer call's cost in ``rows``."""

    def visit(layer, args, kwargs):
        if isinstance(layer, keras.Model):
            inner = args[0] if len(args) == 1 else args
            return _walk(_functional(layer), inner, rows, uncounted, seen, rates, f"{prefix}{layer.name}/")
        outputs = layer.compute_output_spec(*args, **kwargs)
        input_shapes = [tuple(t.shape) for t in keras.tree.flatten((args, kwargs)) if hasattr(t, "shape")]
        output_shape = tuple(keras.tree.flatten(outputs)[0].shape)
        name = prefix + layer.name
        cost = layer_cost(layer, input_shapes, output_shape, rate=rates.get(name))
        if cost is None:
            uncounted.append(f"{name} ({layer.__class__.__name__})")
        params = (
            0 if id(layer) in seen else layer.count_params() if isinstance(layer, keras.layers.Layer) else 0
        )
        seen.add(id(layer))
        rows.append(
            LayerCost(
                name,
                layer.__class__.__name__,
                output_shape,
                params,
                None if cost is None else cost.madds,
                None if cost is None else cost.expected,
                rates.get(name),
            )
        )
        return outputs

    return _graph.run(graph, inputs, visit)


def _rate_probes(graph, prefix=""):
    """``[(layer name, symbolic per-example rates)]`` of every call in ``graph`` (nested models
    included) whose layer has a rate rule, as tensors of ``graph``'s own inputs."""
    probes = []
    for layer, args, kwargs in _graph.calls(graph):
        if isinstance(layer, keras.Model):
            inner = _functional(layer)
            inner_probes = _rate_probes(inner, f"{prefix}{layer.name}/")
            if inner_probes:
                # The nested graph's tensors are its own; a model of them, called on this call's
                # arguments, gives the same rates as tensors of the outer graph.
                probe = keras.Model(inner.input, [tensor for _, tensor in inner_probes])
                outputs = keras.tree.flatten(probe(args[0] if len(args) == 1 else list(args)))
                probes += [(name, tensor) for (name, _), tensor in zip(inner_probes, outputs)]
            continue
        rule = find_rate_rule(layer)
        if rule is not None:
            probes.append((prefix + layer.name, rule(layer, args, kwargs)))
    return probes


def _batches(data):
    if isinstance(data, np.ndarray):  # an array of examples: in batches, as `predict` takes it
        return (data[start : start + 32] for start in range(0, len(data), 32))
    return iter(data)


def measure_rates(model, data, max_batches=None):
    """``{layer name: rate}``: the mean over ``data``'s examples of every rate a layer reports by
    its rate rule (a float, or an array for per-expert rates); a layer called several times
    is averaged over its calls. ``data``: batches of inputs or of ``(inputs, labels, ...)``
    (a ``tf.data.Dataset``, a list), or an array of inputs; ``max_batches`` limits how many
    are read. Names of layers in nested models are prefixed with the model's, as in
    ``Profile.layers``."""
    probes = _rate_probes(_functional(model))
    if not probes:
        return {}
    probe = keras.Model(_functional(model).input, [tensor for _, tensor in probes])
    sums, counts = {}, {}
    for index, batch in enumerate(_batches(data)):
        if max_batches is not None and index >= max_batches:
            break
        x, _, _ = keras.utils.unpack_x_y_sample_weight(batch)
        values = keras.tree.flatten(probe.predict_on_batch(keras.tree.map_structure(np.asarray, x)))
        for (name, _), value in zip(probes, values):
            value = np.asarray(keras.ops.convert_to_numpy(value), dtype="float64")
            sums[name] = sums.get(name, 0.0) + value.sum(axis=0)
            counts[name] = counts.get(name, 0) + value.shape[0]
    if not counts:
        raise ValueError("profile: `data` gave no batches to measure rates on.")
    return {name: _plain(sums[name] / counts[name]) for name in sums}


def _plain(rate):
    return float(rate) if np.ndim(rate) == 0 else rate


def profile(model, input_shape=None, *, rates=None, data=None, max_batches=None, **factory_arguments):
    """Parameters and per-example inference multiply-adds of ``model``, per layer and in total.

    ``model``: a ``keras.Model``, or the name of a zoo model, which is built with
    ``factory_arguments`` (``width=0.5``, ``classes=10``, ...; the factory's defaults otherwise)
    and ``input_shape`` as the command's ``profile`` does.
    ``input_shape``: one example's shape, e.g. ``(224, 224, 3)``; by default the model's own
    (which must then be fully known).
    ``data``: inputs (see ``measure_rates``) on which the layers that run conditionally measure
    their rates (fraction of experts, channels or blocks that run); ``rates``: ``{layer name:
    rate}`` given directly (overriding measured ones). With either, ``Profile.expected_madds``
    and each row's ``expected_madds`` are the multiply-adds that run on average at those rates;
    without, they equal the static counts.
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
    if rates is not None and not isinstance(rates, dict):
        raise ValueError(f"profile: `rates` must be a dict {{layer name: rate}}, got {rates!r}.")
    functional = _functional(model)
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
    used_rates = {} if data is None else measure_rates(model, data, max_batches)
    used_rates.update(rates or {})
    inputs = [keras.KerasTensor((1,) + shape, dtype=t.dtype) for shape, t in zip(shapes, functional.inputs)]
    rows, uncounted = [], []
    _walk(functional, inputs if len(inputs) > 1 else inputs[0], rows, uncounted, set(), used_rates)
    unknown = sorted(set(used_rates) - {row.name for row in rows})
    if unknown:
        raise ValueError(f"profile: `rates` names layers that '{model.name}' does not have: {unknown}.")
    counted = [row for row in rows if row.madds is not None]
    return Profile(
        params=model.count_params(),
        madds=sum(row.madds for row in counted),
        layers=rows,
        uncounted=uncounted,
        expected_madds=sum(row.expected_madds for row in counted),
        rates=used_rates,
    )
