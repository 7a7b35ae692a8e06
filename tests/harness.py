"""``run_layer_test``: the checks every keras-routing layer passes, our equivalent of Keras's own.

Keras tests its layers with ``keras.src.testing.TestCase.run_layer_test``; this is the same idea
for layers that take several inputs, call arguments that are tensors (``routing_weights=``),
add losses, hold seed generators, and have weights that one training step may not reach (an
expert that top-k routing did not pick, a closed gate). Every new layer calls it::

    run_layer_test(
        CondConv2D,
        {"filters": 6, "kernel_size": 3, "num_experts": 4, "padding": "same"},
        input_shape=(3, 8, 8, 5),
        expected_output_shape=(3, 8, 8, 6),
        expected_num_trainable_weights=4,
        expected_num_non_trainable_weights=0,
    )

Inputs (batch size first; exactly one of ``input_shape`` and ``input_data``):

- one shape or array: the layer's first argument;
- a list or tuple of them: passed as one list (``layer([a, b])``), as Keras does;
- a dict of them: passed as keyword arguments (``layer(inputs=x, context=c)``), as Keras does;
- ``call_kwargs``: array values (``routing_weights=r``) are inputs too, fed symbolically with a
  ``None`` batch and through ``fit`` like the others; other values are passed as they are.

Shapes follow Keras's naming: ``compute_output_shape`` takes the shapes of the call's tensor
arguments, the first positionally, keyword tensors as ``<name>_shape``. Random inputs are
standard normal, seeded.

The checks, in order:

1. ``build`` (a single tensor input) and a symbolic call on ``keras.Input`` with a ``None``
   batch: weight counts, output shapes (``expected_output_shape`` with a ``None`` batch);
2. the configuration, unbuilt and once built: ``get_config`` is JSON, and
   ``from_config(get_config())`` and ``serialize_keras_object`` -> ``json.dumps`` ->
   ``json.loads`` -> ``deserialize_keras_object`` give the same configuration; between the two,
   an eager call: output shapes and dtypes (``expected_output_dtype``; unstated, floating outputs
   in ``float32``), finite values, ``compute_output_shape`` agreeing with what came out, weight
   and seed-generator counts (``SeedGenerator``s of the layer and its sublayers); then two calls
   with ``training=True``: ``layer.losses`` holds ``expected_num_losses`` finite scalars after
   each (losses must not accumulate across calls);
3. ``run_training_check``: one ``fit`` step of a functional model (``None`` batch: a generator
   feeds it, so TensorFlow traces a ``tf.function`` with an unknown batch, as on a batched
   ``tf.data``) with plain SGD on the mean squared error against a random target, plus the
   layer's own losses; every trainable weight changes, except those declared in
   ``unreachable_weights`` (paths relative to the layer, ``fnmatch`` patterns such as
   ``"experts/*"``, or a predicate ``weight -> bool``), which are reported in the result and
   not required; a pattern that matches no weight is an error;
4. ``.keras`` save and load of that model with ``safe_mode=True``: the same outputs;
5. ``run_mixed_precision_check``: the layer built with ``dtype=mixed_precision_policy`` (default
   ``"mixed_bfloat16"``; ``"mixed_float16"`` too): floating outputs, eager and symbolic, in the
   policy's compute dtype; the layer and every sublayer (``layer._flatten_layers()``) computing in
   it with ``float32`` floating variables (integer state such as a schedule's step counter stays
   integer; a sublayer computing in ``float32`` fails even when the layer
   casts its result back).

``layer_cls`` is a class (or any callable returning a layer); a layer instance among the
``init_kwargs`` (``routing=Routing(...)``) is cloned from its config for each construction, so
every construction gets its own, unbuilt, as a user who passes one instance to one layer.
Returns a ``LayerTestReport``. The export formats are tested by ``tests/test_export.py``, not here.
"""

import dataclasses
import fnmatch
import inspect
import json
import pathlib
import tempfile

import numpy as np

import keras

from tests.reference import to_numpy


@dataclasses.dataclass
class LayerTestReport:
    layer: keras.layers.Layer  # the float32 layer called eagerly (then with training=True)
    outputs: object  # its first eager outputs, as numpy arrays, in the layer's output structure
    unchanged: list  # declared-unreachable weights (paths relative to the layer) one step left as they were


def run_layer_test(
    layer_cls,
    init_kwargs=None,
    *,
    input_shape=None,
    input_data=None,
    call_kwargs=None,
    expected_output_shape,
    expected_output_dtype=None,
    expected_num_trainable_weights,
    expected_num_non_trainable_weights,
    expected_num_seed_generators=0,
    expected_num_losses=0,
    unreachable_weights=(),
    run_training_check=True,
    run_mixed_precision_check=True,
    mixed_precision_policy="mixed_bfloat16",
    tmp_path=None,
):
    """Run the checks of this module's docstring on ``layer_cls(**init_kwargs)``."""
    if (input_shape is None) == (input_data is None):
        raise ValueError("run_layer_test: give exactly one of `input_shape` and `input_data`.")
    init_kwargs = dict(init_kwargs or {})
    inputs = _Inputs(input_shape, input_data, call_kwargs or {})
    expected_shapes = _flatten_shapes(expected_output_shape)

    def make(**overrides):
        kwargs = {
            key: type(value).from_config(value.get_config())
            if isinstance(value, keras.layers.Layer)
            else value
            for key, value in init_kwargs.items()
        }
        return layer_cls(**kwargs, **overrides)

    def check_counts(layer, when):
        for kind, weights, expected in (
            ("trainable", layer.trainable_weights, expected_num_trainable_weights),
            ("non-trainable", layer.non_trainable_weights, expected_num_non_trainable_weights),
        ):
            assert len(weights) == expected, (
                f"{when}: {len(weights)} {kind} weights, expected {expected}: {[w.path for w in weights]}"
            )
        seeds = _seed_generators(layer)
        assert len(seeds) == expected_num_seed_generators, (
            f"{when}: {len(seeds)} seed generators, expected {expected_num_seed_generators}"
        )

    def check_dtypes(outputs, when, mixed_dtype=None):
        # expected_output_dtype describes the float32 layer; under a mixed policy floating
        # outputs are in its compute dtype. Unstated: floating outputs in float32, others any.
        stated = (
            [None] * len(outputs) if expected_output_dtype is None else _flatten_dtypes(expected_output_dtype)
        )
        for index, (tensor, wanted) in enumerate(zip(outputs, stated)):
            actual = keras.backend.standardize_dtype(tensor.dtype)
            if wanted is None:
                if not _is_float(actual):
                    continue
                wanted = "float32"
            if mixed_dtype is not None and _is_float(wanted):
                wanted = mixed_dtype
            assert actual == wanted, f"{when}: output {index} has dtype {actual}, expected {wanted}"

    # 1. Build, and a symbolic call with a None batch (on the built layer: the model in 3. is
    # built by its symbolic call). Each layer built costs compiling its initialisers on JAX.
    layer = make()
    if inputs.single_shape is not None:
        layer.build(inputs.single_shape)
        assert layer.built, "build() left the layer unbuilt"
        check_counts(layer, "after build()")
    symbolic = keras.tree.flatten(inputs.call(layer, inputs.symbolic()))
    check_counts(layer, "after a symbolic call")
    _check_shapes(symbolic, [(None,) + tuple(s[1:]) if s else s for s in expected_shapes], "symbolic call")
    check_dtypes(symbolic, "symbolic call")

    # 2. Configuration, unbuilt; an eager call: shapes, dtypes, finite values,
    # compute_output_shape, counts; configuration, built; losses.
    layer = make()
    _check_config(layer, "unbuilt")
    structured = inputs.call(layer, inputs.arrays)
    outputs = keras.tree.flatten(structured)
    _check_shapes(outputs, expected_shapes, "eager call")
    check_dtypes(outputs, "eager call")
    for index, tensor in enumerate(outputs):
        if _is_float(keras.backend.standardize_dtype(tensor.dtype)):
            assert np.all(np.isfinite(to_numpy(tensor))), f"eager call: output {index} is not finite"
    declared = _flatten_shapes(inputs.call_compute_output_shape(layer))
    assert declared == [tuple(t.shape) for t in outputs], (
        f"compute_output_shape gives {declared}, the call gave {[tuple(t.shape) for t in outputs]}"
    )
    check_counts(layer, "after an eager call")
    _check_config(layer, "built")  # may add sublayers' build_config, as Keras's nested layers do
    report = LayerTestReport(layer, keras.tree.map_structure(to_numpy, structured), [])
    if "training" in inspect.signature(layer.call).parameters:
        for attempt in ("first", "second"):
            inputs.call(layer, inputs.arrays, training=True)
            assert len(layer.losses) == expected_num_losses, (
                f"{attempt} call in training: {len(layer.losses)} losses, expected {expected_num_losses}"
            )
            for loss in layer.losses:
                value = to_numpy(loss)
                assert value.shape == () and np.isfinite(value), f"a loss is not a finite scalar: {value}"
    else:
        assert expected_num_losses == 0, "the layer's call takes no `training` argument"

    # 3. One training step through fit; 4. .keras save and load of the trained model.
    model = inputs.model(make())
    if run_training_check:
        report.unchanged = _check_training_step(model, inputs, outputs, unreachable_weights)
        print(f"run_layer_test: declared unreachable, unchanged after one step: {report.unchanged}")
    if tmp_path is None:
        with tempfile.TemporaryDirectory() as directory:
            _check_saving(model, inputs, pathlib.Path(directory))
    else:
        _check_saving(model, inputs, pathlib.Path(tmp_path))

    # 5. Mixed precision: outputs, the layer and every sublayer in the policy's compute dtype.
    if run_mixed_precision_check:
        policy = keras.dtype_policies.get(mixed_precision_policy)
        mixed = make(dtype=mixed_precision_policy)
        outputs = keras.tree.flatten(inputs.call(mixed, inputs.arrays))
        check_dtypes(outputs, f"{mixed_precision_policy}, eager call", policy.compute_dtype)
        symbolic = keras.tree.flatten(inputs.call(mixed, inputs.symbolic()))
        check_dtypes(symbolic, f"{mixed_precision_policy}, symbolic call", policy.compute_dtype)
        for sublayer in mixed._flatten_layers():
            assert (sublayer.compute_dtype, sublayer.variable_dtype) == (policy.compute_dtype, "float32"), (
                f"{mixed_precision_policy}: sublayer {sublayer.name!r} ({type(sublayer).__name__}) computes "
                f"in {sublayer.compute_dtype} with {sublayer.variable_dtype} variables"
            )
        for weight in mixed.weights:  # integer state (a schedule's step counter) stays integer
            if _is_float(keras.backend.standardize_dtype(weight.dtype)):
                assert weight.dtype == "float32", f"{mixed_precision_policy}: {weight.path} is {weight.dtype}"
        check_counts(mixed, f"{mixed_precision_policy}, after an eager call")
    return report


class _Inputs:
    """The layer's tensor inputs as numpy arrays: one positional structure and keyword tensors."""

    def __init__(self, input_shape, input_data, call_kwargs):
        rng = np.random.default_rng(0)
        if input_shape is not None:
            given = _map_shapes(lambda shape: rng.normal(size=shape).astype("float32"), input_shape)
        else:
            given = keras.tree.map_structure(to_numpy, input_data)
        self.keywords = dict(given) if isinstance(given, dict) else {}
        self.positional = None if isinstance(given, dict) else given
        self.static = {}
        for key, value in call_kwargs.items():
            if isinstance(value, np.ndarray) or keras.ops.is_tensor(value):
                self.keywords[key] = to_numpy(value)
            else:
                self.static[key] = value
        self.single_shape = None
        if (
            self.positional is not None
            and not isinstance(self.positional, (list, tuple))
            and not self.keywords
        ):
            self.single_shape = self.positional.shape
        self.arrays = (self.positional, self.keywords)

    def call(self, layer, tensors, **extra):
        positional, keywords = tensors
        if positional is None:
            return layer(**keywords, **self.static, **extra)
        return layer(positional, **keywords, **self.static, **extra)

    def call_compute_output_shape(self, layer):
        shapes = {f"{key}_shape": value.shape for key, value in self.keywords.items()}
        if self.positional is None:
            return layer.compute_output_shape(**shapes)
        return layer.compute_output_shape(_map_arrays(lambda a: a.shape, self.positional), **shapes)

    def names(self):
        """Each input array with the model input name it gets: ``input_<i>`` or its keyword."""
        flat = [] if self.positional is None else keras.tree.flatten(self.positional)
        named = {f"input_{index}": array for index, array in enumerate(flat)}
        return {**named, **self.keywords}

    def symbolic(self, named=None):
        """``keras.Input`` with a ``None`` batch for every input, in the structure of the call."""
        named = named or {
            name: keras.Input(array.shape[1:], dtype=array.dtype, name=name)
            for name, array in self.names().items()
        }
        positional = None
        if self.positional is not None:
            flat = [named[f"input_{index}"] for index in range(len(keras.tree.flatten(self.positional)))]
            positional = keras.tree.pack_sequence_as(self.positional, flat)
        return positional, {key: named[key] for key in self.keywords}

    def model(self, layer):
        named = {
            name: keras.Input(array.shape[1:], dtype=array.dtype, name=name)
            for name, array in self.names().items()
        }
        return keras.Model(named, self.call(layer, self.symbolic(named)))


def _check_training_step(model, inputs, outputs, unreachable_weights):
    layer = model.layers[-1]
    x = inputs.names()
    rng = np.random.default_rng(1)
    targets = [rng.normal(size=tuple(t.shape)).astype("float32") for t in outputs]
    losses = [
        "mean_squared_error" if _is_float(keras.backend.standardize_dtype(t.dtype)) else None for t in outputs
    ]
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=losses[0] if len(losses) == 1 else losses,
        jit_compile="auto",
    )
    y = targets[0] if len(targets) == 1 else tuple(targets)  # tf.data takes no lists

    def batches():  # a generator: TensorFlow's train step then sees a None batch
        while True:
            yield x, y

    relative = {id(w): w.path.removeprefix(f"{layer.name}/") for w in layer.trainable_weights}
    unreachable = _unreachable(layer.trainable_weights, relative, unreachable_weights)
    before = {id(w): to_numpy(w).copy() for w in layer.trainable_weights}
    history = model.fit(batches(), steps_per_epoch=1, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0]), f"training loss {history.history['loss'][0]}"
    unchanged = []
    for weight in layer.trainable_weights:
        if np.array_equal(to_numpy(weight), before[id(weight)]):
            if id(weight) in unreachable:
                unchanged.append(relative[id(weight)])
            else:
                raise AssertionError(
                    f"one training step left {relative[id(weight)]} unchanged; declare it in "
                    "`unreachable_weights` if no single step can reach it"
                )
    return unchanged


def _unreachable(weights, relative, declared):
    if callable(declared):
        return {id(w) for w in weights if declared(w)}
    found = set()
    for pattern in declared:
        matches = {id(w) for w in weights if fnmatch.fnmatchcase(relative[id(w)], pattern)}
        assert matches, f"unreachable_weights: {pattern!r} matches no weight of {sorted(relative.values())}"
        found |= matches
    return found


def _check_saving(model, inputs, directory):
    x = inputs.names()
    expected = [to_numpy(t) for t in keras.tree.flatten(model(x))]
    path = str(directory / "run_layer_test.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    for index, (got, want) in enumerate(zip(keras.tree.flatten(loaded(x)), expected)):
        np.testing.assert_allclose(
            to_numpy(got), want, rtol=1e-6, atol=1e-6, err_msg=f".keras round trip: output {index}"
        )


def _check_config(layer, when):
    config = layer.get_config()
    try:
        text = json.dumps(config, sort_keys=True)
    except TypeError as error:
        raise AssertionError(f"{when}: get_config() is not JSON: {error}") from error
    cls = type(layer)
    again = json.dumps(cls.from_config(config).get_config(), sort_keys=True)
    assert again == text, f"{when}: from_config(get_config()).get_config() differs:\n{again}\n{text}"
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    revived = keras.saving.deserialize_keras_object(serialized)
    assert type(revived) is cls, f"{when}: deserialized a {type(revived).__name__}, expected {cls.__name__}"
    again = json.dumps(revived.get_config(), sort_keys=True)
    assert again == text, f"{when}: the JSON-serialized layer's config differs:\n{again}\n{text}"
    return json.loads(text)


def _seed_generators(layer):
    """Every distinct ``SeedGenerator`` of the layer and its sublayers (as Keras's harness counts)."""
    seen = {}
    for sublayer in layer._flatten_layers():
        for generator in sublayer._seed_generators:
            seen[id(generator)] = generator
    return list(seen.values())


def _check_shapes(outputs, expected, when):
    actual = [tuple(t.shape) for t in outputs]
    assert actual == [tuple(s) for s in expected], f"{when}: output shapes {actual}, expected {expected}"


def _is_shape(value):
    return isinstance(value, (tuple, list)) and all(v is None or isinstance(v, int) for v in value)


def _map_shapes(fn, shapes):
    if _is_shape(shapes):
        return fn(tuple(shapes))
    if isinstance(shapes, dict):
        return {key: _map_shapes(fn, value) for key, value in shapes.items()}
    return type(shapes)(_map_shapes(fn, value) for value in shapes)


def _map_arrays(fn, arrays):
    if isinstance(arrays, dict):
        return {key: _map_arrays(fn, value) for key, value in arrays.items()}
    if isinstance(arrays, (list, tuple)):
        return type(arrays)(_map_arrays(fn, value) for value in arrays)
    return fn(arrays)


def _flatten_shapes(shapes):
    """Shape tuples in ``keras.tree.flatten`` order (dicts by sorted key)."""
    if _is_shape(shapes):
        return [tuple(shapes)]
    if isinstance(shapes, dict):
        return [s for key in sorted(shapes) for s in _flatten_shapes(shapes[key])]
    return [s for value in shapes for s in _flatten_shapes(value)]


def _flatten_dtypes(dtypes):
    return [dtypes] if isinstance(dtypes, str) else keras.tree.flatten(dtypes)


def _is_float(dtype):
    return "float" in dtype
