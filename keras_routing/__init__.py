"""keras-routing: conditional-computation layers and models for Keras 3."""

from keras_routing import layers, zoo
from keras_routing.profiler import Profile, profile

__version__ = "0.1.0"
__all__ = ["Profile", "layers", "profile", "zoo", "__version__"]
