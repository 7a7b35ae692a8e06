"""Checks of the arguments users give, shared by the layers, the zoo, the pipelines, recipes and
the command: each returns the value (as a Python ``int`` or ``float``) or raises a ``ValueError``
naming the argument and what was expected, as ``keras.layers`` does.

Integers are any ``numbers.Integral`` (``np.int64(4)`` too: what NumPy arithmetic gives), but not
``bool`` (``True`` is not one expert). Numbers are finite reals, not ``bool``. This module
imports neither Keras nor NumPy: the command uses it before choosing the backend.
"""

import math
import numbers


def is_integer(value):
    """Whether ``value`` is an integer: Python's or NumPy's, not a ``bool``."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _fail(name, expected, value, owner, optional):
    prefix = f"{owner}: " if owner else ""
    expected = f"None or {expected}" if optional else expected
    return ValueError(f"{prefix}`{name}` must be {expected}, got {value!r}.")


def integer(value, name, minimum=1, maximum=None, *, optional=False, owner=None):
    """``value`` as an ``int`` if it is an integer in ``[minimum, maximum]``; ``optional``:
    ``None`` passes too. ``owner`` (a class or function name) starts the message."""
    if optional and value is None:
        return None
    if maximum is None:
        expected = f"an integer >= {minimum}"
    else:
        expected = f"an integer in [{minimum}, {maximum}]"
    if not is_integer(value) or value < minimum or (maximum is not None and value > maximum):
        raise _fail(name, expected, value, owner, optional)
    return int(value)


def number(value, name, *, above=None, at_least=None, below=None, at_most=None, optional=False, owner=None):
    """``value`` as a ``float`` if it is a finite real number within the bounds given
    (``above`` / ``below`` exclusive, ``at_least`` / ``at_most`` inclusive)."""
    if optional and value is None:
        return None
    low = f"({above}" if above is not None else f"[{at_least}" if at_least is not None else None
    high = f"{below})" if below is not None else f"{at_most}]" if at_most is not None else None
    if low and high:
        expected = f"a number in {low}, {high}"
    elif low:
        expected = f"a number {'>' if above is not None else '>='} {low[1:]}"
    elif high:
        expected = f"a number {'<' if below is not None else '<='} {high[:-1]}"
    else:
        expected = "a finite number"
    valid = (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (above is None or value > above)
        and (at_least is None or value >= at_least)
        and (below is None or value < below)
        and (at_most is None or value <= at_most)
    )
    if not valid:
        raise _fail(name, expected, value, owner, optional)
    return float(value)


def fraction(value, name, *, optional=False, owner=None):
    """A dropout-like rate: a number in [0, 1)."""
    return number(value, name, at_least=0, below=1, optional=optional, owner=owner)
