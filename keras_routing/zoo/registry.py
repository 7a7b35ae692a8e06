"""The zoo's registry: every factory under its name, with the input preprocessing it expects."""

_FACTORIES = {}
_PREPROCESSING = {}


def register(name, preprocessing="mobilenet"):
    """Decorator: make a factory available as ``keras_routing.zoo.get(name)``.

    ``preprocessing`` names the pixel normalisation its models expect (one of
    ``keras_routing.data.PREPROCESSING``), so pipelines can match the model.
    """

    def add(factory):
        if name in _FACTORIES:
            raise ValueError(f"A zoo model named {name!r} is registered already.")
        _FACTORIES[name] = factory
        _PREPROCESSING[name] = preprocessing
        return factory

    return add


def list_models():
    """Names of every model in the zoo, sorted."""
    return sorted(_FACTORIES)


def get(name, **kwargs):
    """Build the zoo model ``name`` with the factory's keyword arguments."""
    return factory(name)(**kwargs)


def factory(name):
    """The factory function registered as ``name``."""
    if name not in _FACTORIES:
        raise ValueError(f"Unknown zoo model {name!r}; choose one of: {', '.join(list_models())}.")
    return _FACTORIES[name]


def preprocessing(name):
    """The pixel normalisation zoo model ``name`` expects: ``"mobilenet"`` ([-1, 1]) or
    ``"caffe"`` (ResNet's BGR minus the ImageNet mean), as in ``keras.applications``."""
    factory(name)
    return _PREPROCESSING[name]
