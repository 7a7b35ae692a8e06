"""Which routing weights each CondConv layer of a network uses: the paper's routing ablations.

The CondConv paper computes one routing function per block from the block's input and shares
its weights among the block's layers. Table 6 and Fig. 3 vary that:

- ``"per_block"`` (default): a new routing function at every block.
- ``"single"``: computed once, at the first CondConv block, and reused by every later layer.
- ``"partially_shared"``: computed at every other block and reused by the next one.
- ``"hierarchical"``: each block's routing function also sees the previous block's weights.

and the routing function itself (a ``Routing`` configuration): ``activation="softmax"``,
``hidden_units`` or ``hidden_ratio`` (hidden layer size as a fraction of the block's input
channels: the paper's small / medium / large are 1/8, 1 and 8), ``dropout``, and
``per_channel=True`` (a weight per expert per output channel, one routing function per layer with
a hidden layer of half the input channels, as in the paper's Fig. 3).

The classifier counts as the last block.
"""

from keras_routing.layers import Routing

SHARING = ("per_block", "single", "partially_shared", "hierarchical")
_ROUTING_KEYS = ("activation", "hidden_units", "hidden_ratio", "dropout", "per_channel", "sharing")


def parse_routing(routing):
    """``routing`` as a factory accepts it -> (sharing, options for ``Routing``)."""
    if isinstance(routing, str) and routing in SHARING:
        return routing, {}
    if isinstance(routing, Routing):
        config = routing.get_config()
        routing = {k: config[k] for k in ("activation", "hidden_units", "dropout")}
        routing["per_channel"] = bool(config["per_channel_units"])
    if not isinstance(routing, dict):
        raise ValueError(f"`routing` must be one of {SHARING}, a dict or a Routing layer, got {routing!r}.")
    unknown = set(routing) - set(_ROUTING_KEYS)
    if unknown:
        raise ValueError(f"`routing` got unknown keys {sorted(unknown)}; valid keys are {_ROUTING_KEYS}.")
    options = dict(routing)
    sharing = options.pop("sharing", "per_block")
    if sharing not in SHARING:
        raise ValueError(f"`routing['sharing']` must be one of {SHARING}, got {sharing!r}.")
    if options.get("per_channel") and sharing != "per_block":
        raise ValueError("Per-channel routing gives each layer its own weights: use sharing='per_block'.")
    if options.get("hidden_units") and options.get("hidden_ratio"):
        raise ValueError("`routing`: give `hidden_units` or `hidden_ratio`, not both.")
    return sharing, options


class RoutingPlan:
    """Hands out routing weights to the CondConv layers of a model as it is being built.

    Call ``start_block(block_input, name)`` at each CondConv block, then ``weights(out_channels,
    layer_name)`` for each CondConv layer in it.
    """

    def __init__(self, experts, routing="per_block"):
        self.experts = experts
        self.sharing, self.options = parse_routing(routing)
        self.per_channel = bool(self.options.pop("per_channel", False))
        self.hidden_ratio = self.options.pop("hidden_ratio", None)
        self._block_index = -1
        self._block_input = None
        self._current = None

    def _routing(self, in_channels, name, per_channel_units=None):
        options = dict(self.options)
        if self.hidden_ratio:
            options["hidden_units"] = max(1, round(in_channels * self.hidden_ratio))
        if per_channel_units:
            options.setdefault("hidden_units", max(1, in_channels // 2))
        return Routing(self.experts, per_channel_units=per_channel_units, name=name, **options)

    def start_block(self, block_input, name):
        self._block_index += 1
        self._block_input = block_input
        if self.per_channel:
            return
        first = self._current is None
        if self.sharing == "single" and not first:
            return
        if self.sharing == "partially_shared" and self._block_index % 2 == 1:
            return
        routing = self._routing(block_input.shape[-1], f"{name}_routing")
        if self.sharing == "hierarchical" and not first:
            self._current = routing(block_input, context=self._current)
        else:
            self._current = routing(block_input)

    def weights(self, out_channels, layer_name):
        if self._block_input is None:
            raise RuntimeError("RoutingPlan.weights() before start_block().")
        if self.per_channel:
            routing = self._routing(self._block_input.shape[-1], f"{layer_name}_routing", out_channels)
            return routing(self._block_input)
        return self._current
