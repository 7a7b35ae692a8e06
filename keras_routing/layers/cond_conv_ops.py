"""The ways to compute a CondConv convolution, and the choice between them.

Every function here returns the literal mixture ``sum_i r_i * conv(x, W_i)`` (bias excluded),
for a batch of inputs ``x`` (channels last), a stacked kernel ``(num_experts, *kernel_shape)``
and routing weights ``r`` of shape ``(batch, num_experts)`` or, for per-channel routing,
``(batch, num_experts, out_channels)``. They differ only in cost, and which is cheapest depends
on the backend, the kind of convolution and the batch size (see ``choose_strategy``):

- ``mixture``: the experts as one wide convolution, then a weighted sum of their outputs.
  ``num_experts`` times the convolution FLOPs, but a single large batched convolution.
- ``grouped``: the per-example kernel ``sum_i r_i W_i``, with the batch folded into the channels
  so one grouped (or depthwise) convolution runs every example with its own kernel.
- ``patches``: the per-example kernel applied as shifted slices of the input times per-example
  matrices (im2col and a batched matmul for full convolutions, shifted multiply-adds for
  depthwise ones). Plain tensor algebra; fastest where the backend's convolution gradients are
  slow (XLA on CPU).
- ``single``: batch size 1, the paper's inference path: mix the kernel, run one convolution.
- ``stacked`` (full) and ``separate`` (depthwise): what int8 exports run, static kernels only:
  the experts stacked along the input channels, each fed its weighted input; each expert's
  depthwise convolution on its own, weighted and added up.

Only ``keras.ops`` is used, so every formulation runs on every backend.
"""

from keras import backend, ops


def mix_kernels(routing_weights, kernel):
    """Per-example kernels ``sum_i r[b, i] * kernel[i]``: ``(batch, *kernel.shape[1:])``.

    With per-channel routing (``r`` of rank 3), each output channel (the kernel's last axis)
    has its own weight per expert.
    """
    num_experts = kernel.shape[0]
    out_channels = kernel.shape[-1]
    if len(routing_weights.shape) == 2:
        flat = ops.reshape(kernel, (num_experts, -1))
        mixed = ops.matmul(routing_weights, flat)
    else:
        flat = ops.reshape(kernel, (num_experts, -1, out_channels))
        mixed = ops.einsum("bnf,nkf->bkf", routing_weights, flat)
    return ops.reshape(mixed, (-1,) + tuple(kernel.shape[1:]))


def mix_bias(routing_weights, bias):
    """Per-example bias ``sum_i r[b, i] * bias[i]``: ``(batch, out_channels)``."""
    if len(routing_weights.shape) == 2:
        return ops.matmul(routing_weights, bias)
    return ops.sum(routing_weights * bias[None], axis=1)


def weighted_sum_of_experts(outputs, routing_weights):
    """``outputs`` (batch, ..., num_experts, out_channels) summed over experts with ``r``.

    A broadcast multiply and a sum rather than an einsum: converted to LiteRT, the einsum
    becomes transposes around a BATCH_MATMUL, which has no fast int8 kernel."""
    r = routing_weights
    if len(r.shape) == 2:
        r = r[..., None]
    r = ops.reshape(r, (-1,) + (1,) * (len(outputs.shape) - 3) + tuple(r.shape[1:]))
    return ops.sum(outputs * r, axis=-2)


def conv_output_size(size, kernel, stride, dilation, padding):
    """One spatial axis of a convolution's output, as TensorFlow and Keras compute it."""
    extent = (kernel - 1) * dilation + 1
    if padding == "same":
        return -(-size // stride)
    return (size - extent) // stride + 1


def _pad_same(x, kernel_size, strides, dilation_rate):
    """Zero-pad ``x`` the way TensorFlow's ``SAME`` does (extra pixel after)."""
    pads = [(0, 0)]
    for axis, (k, s, d) in enumerate(zip(kernel_size, strides, dilation_rate), start=1):
        size = x.shape[axis]
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        pads.append((total // 2, total - total // 2))
    pads.append((0, 0))
    if all(p == (0, 0) for p in pads):
        return x
    return ops.pad(x, pads)


def _undilated(kernel, dilation_rate):
    """Per-example kernels ``(batch, kh, kw, ...)`` with ``d - 1`` zeros between taps: the
    undilated kernel of extent ``(k - 1) * d + 1`` whose convolution is the dilated one's, exactly
    (the zeros add nothing), with ``dilation_rate`` 1. For the grouped forms when the batch,
    hence the folded channel count, is unknown (a TensorFlow graph, as in ``fit`` on a batched
    ``tf.data``): TensorFlow's dilated convolutions need the kernel's full static shape."""
    for axis, d in ((1, dilation_rate[0]), (2, dilation_rate[1])):
        if d == 1:
            continue
        taps = kernel.shape[axis]
        spread = ops.expand_dims(kernel, axis + 1)  # (B, ..., taps, 1, ...)
        pads = [(0, 0)] * len(spread.shape)
        pads[axis + 1] = (0, d - 1)
        spread = ops.pad(spread, pads)  # (B, ..., taps, d, ...): each tap, then d - 1 zeros
        shape = [-1] + list(kernel.shape[1:])  # only the batch is unknown
        shape[axis] = taps * d
        kernel = ops.reshape(spread, shape)
        extent = (taps - 1) * d + 1  # drop the zeros after the last tap
        kernel = kernel[:, :extent] if axis == 1 else kernel[:, :, :extent]
    return kernel


def _fold_dilation(mixed, x, dilation_rate):
    """``(mixed, dilation_rate)`` for a grouped convolution: as given, or undilated where the
    batch is unknown (see ``_undilated``)."""
    if x.shape[0] is None and max(dilation_rate) > 1:
        return _undilated(mixed, dilation_rate), (1, 1)
    return mixed, dilation_rate


def _shifted_slices(x, kernel_size, strides, padding, dilation_rate):
    """The ``kh * kw`` strided views of ``x`` that each kernel tap multiplies, row-major."""
    if padding == "same":
        x = _pad_same(x, kernel_size, strides, dilation_rate)
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, strides, dilation_rate
    out_h = (x.shape[1] - (kh - 1) * dh - 1) // sh + 1
    out_w = (x.shape[2] - (kw - 1) * dw - 1) // sw + 1
    if (kh, kw, sh, sw) == (1, 1, 1, 1):
        return [x]  # a 1x1 kernel's one tap is the whole input: no slice (a copy in LiteRT)
    return [
        x[:, i * dh : i * dh + (out_h - 1) * sh + 1 : sh, j * dw : j * dw + (out_w - 1) * sw + 1 : sw, :]
        for i in range(kh)
        for j in range(kw)
    ]


# --- full convolutions: kernel (num_experts, kh, kw, in_channels, filters) -----------------


def conv_mixture(x, kernel, r, strides, padding, dilation_rate):
    n, kh, kw, cin, f = kernel.shape
    stacked = ops.reshape(ops.transpose(kernel, (1, 2, 3, 0, 4)), (kh, kw, cin, n * f))
    y = ops.conv(x, stacked, strides=strides, padding=padding, dilation_rate=dilation_rate)
    y = ops.reshape(y, (-1, y.shape[1], y.shape[2], n, f))
    return weighted_sum_of_experts(y, r)


def conv_stacked(x, kernel, r, strides, padding, dilation_rate):
    """The experts stacked along the input channels, expert i fed ``r_i * x``: one convolution
    with a static kernel that sums the experts in its accumulator. ``num_experts`` times the
    FLOPs, like ``mixture``, but with no per-expert outputs to weight and add up, which in an
    int8 model are two more requantized tensors. Per-channel routing weights depend on the
    output channel, so they take ``mixture``."""
    if len(r.shape) == 3:
        return conv_mixture(x, kernel, r, strides, padding, dilation_rate)
    n, kh, kw, cin, f = kernel.shape
    scaled = x[:, :, :, None, :] * ops.reshape(r, (-1, 1, 1, n, 1))
    scaled = ops.reshape(scaled, (-1, ops.shape(x)[1], ops.shape(x)[2], n * cin))
    stacked = ops.reshape(ops.transpose(kernel, (1, 2, 0, 3, 4)), (kh, kw, n * cin, f))
    return ops.conv(scaled, stacked, strides=strides, padding=padding, dilation_rate=dilation_rate)


def conv_grouped(x, kernel, r, strides, padding, dilation_rate):
    _, kh, kw, cin, f = kernel.shape
    height, width = ops.shape(x)[1], ops.shape(x)[2]
    mixed, dilation_rate = _fold_dilation(mix_kernels(r, kernel), x, dilation_rate)  # (B, kh, kw, cin, f)
    kh, kw = mixed.shape[1], mixed.shape[2]
    folded_kernel = ops.reshape(ops.transpose(mixed, (1, 2, 3, 0, 4)), (kh, kw, cin, -1))
    folded_x = ops.reshape(ops.transpose(x, (1, 2, 0, 3)), (1, height, width, -1))
    y = ops.conv(folded_x, folded_kernel, strides=strides, padding=padding, dilation_rate=dilation_rate)
    y = ops.reshape(y, (y.shape[1], y.shape[2], -1, f))
    return ops.transpose(y, (2, 0, 1, 3))


def conv_patches(x, kernel, r, strides, padding, dilation_rate):
    _, kh, kw, cin, f = kernel.shape
    mixed = ops.reshape(mix_kernels(r, kernel), (-1, kh * kw * cin, f))
    slices = _shifted_slices(x, (kh, kw), strides, padding, dilation_rate)
    patches = slices[0] if len(slices) == 1 else ops.concatenate(slices, axis=-1)
    out_h, out_w = patches.shape[1], patches.shape[2]
    patches = ops.reshape(patches, (-1, out_h * out_w, kh * kw * cin))
    y = ops.matmul(patches, mixed)
    return ops.reshape(y, (-1, out_h, out_w, f))


def mix_one(r, kernel, mix):
    """The one example's kernel: a row-vector-matrix product that streams all experts' weights
    once (memory-bound: 42 MB for CC-MobileNetV1 0.5x with 8 experts). A 1-row ``matmul`` is
    the fastest contraction on TensorFlow (einsum, tensordot and a transposed matvec reach the
    same rate on one large stack, but einsum pays more per small kernel). Eager PyTorch runs it
    as ``torch.mm`` on the raw tensors (``_mix_one_torch``): ``keras.ops``'s argument handling
    would cost more than the product, on every call. Figures: docs/performance.md."""
    if len(r.shape) != 2:
        return mix(r, kernel)[0]
    if backend.backend() == "torch":
        mixed = _mix_one_torch(r, kernel)
        if mixed is not None:
            return mixed
    flat = ops.reshape(kernel, (kernel.shape[0], -1))
    return ops.reshape(ops.matmul(r, flat), kernel.shape[1:])


def _mix_one_torch(r, kernel):
    """``mix_one`` on eager PyTorch tensors, or None where ``keras.ops`` must trace it."""
    import torch

    value = getattr(kernel, "value", kernel)  # a Keras variable's value is autocast in scope
    if not (isinstance(r, torch.Tensor) and isinstance(value, torch.Tensor)) or r.device != value.device:
        return None
    return torch.mm(r, value.reshape(value.shape[0], -1)).reshape(value.shape[1:])


def conv_single(x, kernel, r, strides, padding, dilation_rate):
    mixed = mix_one(r, kernel, mix_kernels)
    return ops.conv(x, mixed, strides=strides, padding=padding, dilation_rate=dilation_rate)


# --- depthwise convolutions: kernel (num_experts, kh, kw, in_channels, depth_multiplier) ---


def depthwise_mixture(x, kernel, r, strides, padding, dilation_rate):
    n, kh, kw, cin, m = kernel.shape
    stacked = ops.reshape(ops.transpose(kernel, (1, 2, 3, 0, 4)), (kh, kw, cin, n * m))
    y = ops.depthwise_conv(x, stacked, strides=strides, padding=padding, dilation_rate=dilation_rate)
    # Depthwise output channel c * (n * m) + i * m + j is expert i's channel c * m + j.
    y = ops.reshape(y, (-1, y.shape[1], y.shape[2], cin, n, m))
    y = ops.transpose(y, (0, 1, 2, 4, 3, 5))
    y = ops.reshape(y, (-1, y.shape[1], y.shape[2], n, cin * m))
    return weighted_sum_of_experts(y, r)


def depthwise_separate(x, kernel, r, strides, padding, dilation_rate):
    """Each expert's depthwise convolution on its own, weighted and added up. ``num_experts``
    times the FLOPs (few, for a depthwise convolution) with static kernels only, in ops that
    int8 runtimes run fast: a depthwise convolution whose kernel is computed at run time is
    quantized to one range for all channels, and the widened ``mixture`` needs a reduction
    that LiteRT runs slower than this (docs/performance.md)."""
    out = None
    for i in range(kernel.shape[0]):
        weight = r[:, i]
        weight = ops.reshape(weight, (-1, 1, 1, 1 if len(r.shape) == 2 else weight.shape[-1]))
        y = ops.depthwise_conv(x, kernel[i], strides=strides, padding=padding, dilation_rate=dilation_rate)
        out = y * weight if out is None else out + y * weight
    return out


def depthwise_grouped(x, kernel, r, strides, padding, dilation_rate):
    _, kh, kw, cin, m = kernel.shape
    height, width = ops.shape(x)[1], ops.shape(x)[2]
    mixed, dilation_rate = _fold_dilation(_mix_depthwise(r, kernel), x, dilation_rate)  # (B, kh, kw, cin, m)
    kh, kw = mixed.shape[1], mixed.shape[2]
    folded_kernel = ops.reshape(ops.transpose(mixed, (1, 2, 0, 3, 4)), (kh, kw, -1, m))
    folded_x = ops.reshape(ops.transpose(x, (1, 2, 0, 3)), (1, height, width, -1))
    y = ops.depthwise_conv(
        folded_x, folded_kernel, strides=strides, padding=padding, dilation_rate=dilation_rate
    )
    y = ops.reshape(y, (y.shape[1], y.shape[2], -1, cin * m))
    return ops.transpose(y, (2, 0, 1, 3))


def depthwise_patches(x, kernel, r, strides, padding, dilation_rate):
    _, kh, kw, cin, m = kernel.shape
    mixed = _mix_depthwise(r, kernel)  # (B, kh, kw, cin, m)
    slices = _shifted_slices(x, (kh, kw), strides, padding, dilation_rate)
    y = None
    for tap, piece in enumerate(slices):
        weights = mixed[:, tap // kw, tap % kw]  # (B, cin, m)
        if m == 1:
            term = piece * weights[:, None, None, :, 0]
        else:
            term = ops.reshape(
                piece[..., None] * weights[:, None, None], (-1, piece.shape[1], piece.shape[2], cin * m)
            )
        y = term if y is None else y + term
    return y


def depthwise_single(x, kernel, r, strides, padding, dilation_rate):
    mixed = mix_one(r, kernel, _mix_depthwise)
    return ops.depthwise_conv(x, mixed, strides=strides, padding=padding, dilation_rate=dilation_rate)


def _mix_depthwise(r, kernel):
    """Per-example depthwise kernels; per-channel routing weights index ``cin * m`` outputs."""
    if len(r.shape) == 2:
        return mix_kernels(r, kernel)
    n, kh, kw, cin, m = kernel.shape
    flat = ops.reshape(kernel, (n, kh * kw, cin * m))
    mixed = ops.einsum("bnf,nkf->bkf", r, flat)
    return ops.reshape(mixed, (-1, kh, kw, cin, m))


FULL = {
    "mixture": conv_mixture,
    "stacked": conv_stacked,
    "grouped": conv_grouped,
    "patches": conv_patches,
    "single": conv_single,
}
DEPTHWISE = {
    "mixture": depthwise_mixture,
    "separate": depthwise_separate,
    "grouped": depthwise_grouped,
    "patches": depthwise_patches,
    "single": depthwise_single,
}


def choose_strategy(kind, kernel_size, batch_size, backend_name=None, strides=(1, 1), deployment=None):
    """The fastest formulation for ``kind`` ("full" or "depthwise") on this backend.

    Chosen from ``benchmarks/condconv.py`` on 2-core CPUs (training step at batch 32, ratio to
    the plain layer; figures in docs/performance.md):
    - batch size 1 (inference, the exported graph): one convolution with the mixed kernel, as
      the paper prescribes; except depthwise on JAX, where XLA's CPU depthwise convolution is
      itself slower than nine shifted multiply-adds;
    - JAX: shifted slices and batched matmuls (``patches``); XLA's CPU convolution gradients,
      grouped ones worst of all, are slow;
    - TensorFlow and PyTorch: ``patches`` for full convolutions (TensorFlow runs grouped
      convolutions through XLA on CPU) and the batch folded into one depthwise convolution
      (``grouped``) for depthwise ones.
    An unknown (symbolic) batch size gets a formulation that is right for every batch size.
    TensorFlow's depthwise convolution supports equal strides only; ``patches`` any.

    Exported to LiteRT or ONNX (``deployment``, see ``keras_routing.layers.deployment``), the
    runtime's kernels decide (LiteRT interpreter, XNNPACK, 2 threads, batch 1; figures in
    docs/performance.md): a full convolution becomes the mixed kernel times the image patches, one
    BATCH_MATMUL, which takes a run-time right-hand side at near the static convolution's speed,
    where CONV_2D with a run-time kernel falls back to a far slower kernel behind a transpose
    of the kernel; a depthwise one stays one DEPTHWISE_CONV_2D with the mixed kernel at batch 1
    (shifted multiply-adds were slower over CC-MobileNetV1), shifted multiply-adds for
    any batch size. int8 models keep every kernel static, so that each is quantized per output
    channel: a kernel computed at run time gets one range for all channels, which cost the
    demo's CC-MobileNetV1 much of its accuracy (and BATCH_MATMUL with a run-time int8 operand
    is far slower than the static convolution). Full convolutions take ``stacked``, depthwise ones
    ``separate``. All are builtin ops with no per-example loop.
    """
    backend_name = backend_name or backend.backend()
    if backend_name == "tensorflow" and kind == "depthwise" and strides[0] != strides[1]:
        return "patches"
    if deployment is not None and deployment.freezes_weights:
        if kind == "full":
            return "stacked" if deployment.quantize == "int8" else "patches"
        if deployment.quantize == "int8":
            return "separate"
        return "single" if batch_size == 1 else "patches"
    if backend_name == "jax" and (batch_size != 1 or kind == "depthwise"):
        return "patches"
    if batch_size == 1:
        return "single"
    return "grouped" if kind == "depthwise" else "patches"
