"""The zoo's registry: every factory under its name, with its family, task, the input
preprocessing it expects and the paper it comes from."""

import dataclasses
import typing

# Families of conditional computation (the issues that add one extend this), and "plain" for
# the baselines.
FAMILIES = ("plain", "condconv", "routing", "deepmoe", "gates")
TASKS = ("classification", "detection", "segmentation", "multitask")

_MODELS = {}


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What the zoo records about model ``name``.

    Attributes:
        name: the registered name (``keras_routing.zoo.get(name)``).
        family: one of ``FAMILIES``.
        task: one of ``TASKS``.
        preprocessing: the pixel normalisation its inputs take (one of
            ``keras_routing.data.PREPROCESSING``).
        paper: the paper the model comes from: a file name under ``../shared/papers/`` or a
            citation (``None``: not recorded).
        factory: the function that builds it.
    """

    name: str
    family: str
    task: str
    preprocessing: str
    paper: typing.Optional[str]
    factory: typing.Callable


def register(name, preprocessing="mobilenet", *, family="plain", task="classification", paper=None):
    """Decorator: make a factory available as ``keras_routing.zoo.get(name)``.

    ``preprocessing`` names the pixel normalisation its models expect (one of
    ``keras_routing.data.PREPROCESSING``), so pipelines can match the model; ``family``,
    ``task`` and ``paper`` as ``ModelInfo`` describes them.
    """
    if family not in FAMILIES:
        raise ValueError(f"`family` must be one of {FAMILIES}, got {family!r}.")
    if task not in TASKS:
        raise ValueError(f"`task` must be one of {TASKS}, got {task!r}.")
    if paper is not None and (not isinstance(paper, str) or not paper):
        raise ValueError(f"`paper` must be None, a paper's file name or a citation, got {paper!r}.")

    def add(factory):
        if name in _MODELS:
            raise ValueError(f"A zoo model named {name!r} is registered already.")
        _MODELS[name] = ModelInfo(name, family, task, preprocessing, paper, factory)
        return factory

    return add


def _check_family(family):
    if family not in FAMILIES:
        raise ValueError(f"`family` must be one of {FAMILIES}, got {family!r}.")


def list_models(family=None):
    """Names of every model in the zoo (of ``family`` only, if given), sorted."""
    if family is not None:
        _check_family(family)
    return sorted(name for name, info in _MODELS.items() if family in (None, info.family))


def families():
    """The families that have models in the zoo, in the order of ``FAMILIES``."""
    present = {info.family for info in _MODELS.values()}
    return [family for family in FAMILIES if family in present]


def info(name):
    """The ``ModelInfo`` of zoo model ``name``."""
    if name not in _MODELS:
        raise ValueError(f"Unknown zoo model {name!r}; choose one of: {', '.join(list_models())}.")
    return _MODELS[name]


def get(name, **kwargs):
    """Build the zoo model ``name`` with the factory's keyword arguments."""
    return factory(name)(**kwargs)


def factory(name):
    """The factory function registered as ``name``."""
    return info(name).factory


def preprocessing(name):
    """The pixel normalisation zoo model ``name`` expects: ``"mobilenet"`` ([-1, 1]) or
    ``"caffe"`` (ResNet's BGR minus the ImageNet mean), as in ``keras.applications``."""
    return info(name).preprocessing
