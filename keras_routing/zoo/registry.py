"""The zoo's registry: every factory under its name, for ``get`` and the command line."""

_FACTORIES = {}


def register(name):
    """Decorator: make a factory available as ``keras_routing.zoo.get(name)``."""

    def add(factory):
        if name in _FACTORIES:
            raise ValueError(f"A zoo model named {name!r} is registered already.")
        _FACTORIES[name] = factory
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
