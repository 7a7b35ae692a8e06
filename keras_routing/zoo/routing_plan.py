"""The paper's routing ablations for the zoo's CondConv models; moved to
``keras_routing.models.routing_plan`` (kept here so the old import path works)."""

from keras_routing.models.routing_plan import SHARING, RoutingPlan, parse_routing

__all__ = ["SHARING", "RoutingPlan", "parse_routing"]
