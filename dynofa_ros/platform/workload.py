"""What the simulator runs: a network described as plain numbers, and the published family.

A :class:`Workload` is plain data (no torch): MACs, weight layers, parameters and the runtime
that executes it. The simulator turns it into a latency on a processor at a frequency
(``dynofa_ros.platform.sim``). ``layers`` counts **weight layers** (every executed
``Conv2d`` / ``Linear``, SE convolutions included) because each one brings a fixed number of
kernel launches (conv, BatchNorm, activation, ...) in eager PyTorch, and on the NX GPU that
per-launch host overhead dominates small networks.

From a super-network config, :func:`workload_from_layer_specs` counts them from the per-layer
description (``ElasticMobileNetV3.layer_specs(cfg)`` or ``ElasticViT.layer_specs(cfg)``),
duck-typed so this module stays free of torch::

    specs = supernet.layer_specs(cfg)
    w = workload_from_layer_specs(cfg.id, specs, runtime="torch-static")

A transformer layer is not one weight layer: :func:`vit_layer_kernels` lists the kernels a GPU
runtime launches for it (two LayerNorms, the QKV projection, the two attention products and the
softmax, the head merge, the output projection, the MLP's fc1 + GELU + fc2, two residual adds),
each with its MACs and activation traffic; the layer's kernels count as
``kernels / KERNELS_PER_WEIGHT_LAYER`` weight layers, so the simulator charges each kernel one
launch and a third of a weight layer's host dispatch (``docs/simulator.md``, "Transformer
layers"). The CNN's layers are counted as before.

:data:`PUBLISHED_GPU_FAMILY` is the Dynamic-OFA GPU family published for the Xavier NX
(accuracy, latency, resolution: TOOLCHAIN.md). Its MACs / layers / parameters are **not
published**: we estimate them from a plausible OFA-MBv3 w1.2 configuration per member (deeper and
larger with accuracy, at the published resolution), computed with the project's own super-network
description; see ``docs/simulator.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

#: How the network is executed. Changes the per-layer host overhead and CPU efficiency:
#: ``torch-dynamic``: the elastic super-network in eager PyTorch (weight slicing per layer),
#: which is how the published Dynamic-OFA family ran; ``torch-static``: an extracted static
#: network in eager PyTorch; ``onnxruntime``: an ONNX Runtime session.
RUNTIMES = ("torch-dynamic", "torch-static", "onnxruntime")


@dataclass(frozen=True)
class Workload:
    """One inference of one network (batch 1) as the simulator sees it.

    ``macs``: multiply-accumulates per image; ``layers``: executed weight layers (conv + linear;
    a ViT's launched kernels / :data:`KERNELS_PER_WEIGHT_LAYER`, see :func:`vit_layer_kernels`);
    ``params``: parameters; ``activations``: activation elements read + written per image
    (``None``: estimated from MACs by the model); ``runtime``: one of :data:`RUNTIMES`.
    """

    name: str
    macs: int
    layers: int
    params: int
    activations: int | None = None
    runtime: str = "torch-static"

    def __post_init__(self) -> None:
        for field_name in ("macs", "layers", "params"):
            v = getattr(self, field_name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"workload {self.name!r}: {field_name} must be an integer >= 0")
        if self.layers < 1:
            raise ValueError(f"workload {self.name!r}: layers must be >= 1")
        if self.activations is not None and self.activations < 0:
            raise ValueError(f"workload {self.name!r}: activations must be >= 0")
        if self.runtime not in RUNTIMES:
            raise ValueError(
                f"workload {self.name!r}: runtime {self.runtime!r} is not one of {RUNTIMES}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Workload:
        try:
            return cls(**dict(raw))
        except TypeError as exc:
            raise ValueError(f"bad workload description: {exc}") from exc


def count_weight_layers(specs: Iterable[Any]) -> int:
    """Weight layers of a network from its per-layer description (objects with ``kind`` and,
    for ``expanded_conv``, ``block`` with ``expand_ratio`` and ``use_se``): first conv, final
    expand, feature mix and logits are one each; an MBConv block has depthwise + pointwise, plus
    the expand conv when its expand ratio is not 1, plus two SE convolutions when it has SE.
    ViT layers (:data:`VIT_KINDS`) count their launched kernels (:func:`vit_layer_kernels`),
    converted to weight-layer equivalents (rounded half up, once for the whole network)."""
    n = 0
    vit_kernels = 0
    for s in specs:
        if s.kind in VIT_KINDS:
            vit_kernels += len(vit_layer_kernels(s))
        elif s.kind == "expanded_conv":
            b = s.block
            n += 2 + int(b.expand_ratio != 1) + 2 * int(bool(b.use_se))
        elif s.kind != "AvgPool2D":
            n += 1
    return n + (vit_kernels + KERNELS_PER_WEIGHT_LAYER // 2) // KERNELS_PER_WEIGHT_LAYER


def workload_from_layer_specs(
    name: str, specs: Iterable[Any], runtime: str = "torch-static"
) -> Workload:
    """A :class:`Workload` from ``layer_specs`` entries (each with ``macs``, ``params``,
    ``input_shape``, ``output_shape``); activations are summed from the layer shapes, times
    the expansion inside each block (a block reads and writes its expanded tensor three times);
    a ViT layer's are what its kernels read and write (:func:`vit_layer_kernels`)."""
    specs = list(specs)
    acts = 0
    for s in specs:
        if s.kind in VIT_KINDS:
            acts += sum(k.elements for k in vit_layer_kernels(s))
            continue
        a_in = _prod(s.input_shape)
        a_out = _prod(s.output_shape)
        acts += a_in + a_out
        if s.kind == "expanded_conv":
            b = s.block
            mid = b.mid_channels * _prod(s.output_shape[:2])
            acts += 3 * mid  # expand out, depthwise in/out (estimate of the traffic, not exact)
    return Workload(
        name=name,
        macs=int(sum(s.macs for s in specs)),
        layers=count_weight_layers(specs),
        params=int(sum(s.params for s in specs)),
        activations=int(acts),
        runtime=runtime,
    )


# ------------------------------------------------------------------------- transformer layers
#: Kernels per weight layer the simulator charges (``NXModel.kernels_per_layer``: conv,
#: BatchNorm, activation). A ViT's kernel count is divided by it to give weight-layer
#: equivalents, so each of its kernels costs one launch and a third of a layer's host dispatch.
KERNELS_PER_WEIGHT_LAYER = 3

#: ``layer_specs`` kinds of the ViT super-network (``dynofa_ros.supernet.vit.ViTLayerSpec``).
VIT_KINDS = ("PatchEmbed", "TransformerLayer", "Head")


@dataclass(frozen=True)
class Kernel:
    """One kernel launch of batch-1 inference: ``macs`` multiply-accumulates and ``elements``
    activation elements read + written (weights are counted once, in ``Workload.params``)."""

    op: str
    macs: int
    elements: int


def transformer_layer_kernels(
    tokens: int, embed: int, heads: int, head_dim: int, hidden: int
) -> tuple[Kernel, ...]:
    """The kernels a GPU runtime launches for one pre-norm transformer layer, unfused (eager
    PyTorch, or the extracted network's ONNX graph on a CUDA back-end without attention fusion).

    ``n`` tokens of width ``e``, ``heads`` x ``head_dim`` = ``a`` attention width, MLP ``hidden``
    units; attention scores are ``heads x n x n``. Their MACs sum to the layer's MACs
    (``vit_config.layer_macs``). Views (reshape, permute, unbind) launch nothing."""
    n, e, m = tokens, embed, hidden
    a = heads * head_dim
    sc = heads * n * n
    return (
        Kernel("layernorm1", 0, 2 * n * e),
        Kernel("qkv_gemm", n * e * 3 * a, n * e + 3 * n * a),
        Kernel("scores_bmm", n * n * a, 2 * n * a + sc),  # q k^T per head, scale folded in
        Kernel("softmax", 0, 2 * sc),
        Kernel("context_bmm", n * n * a, sc + 2 * n * a),  # softmax(scores) v per head
        Kernel("merge_heads_copy", 0, 2 * n * a),  # (heads, n, d) -> (n, heads * d), contiguous
        Kernel("out_proj_gemm", n * a * e, n * a + n * e),
        Kernel("residual_add1", 0, 3 * n * e),
        Kernel("layernorm2", 0, 2 * n * e),
        Kernel("fc1_gemm", n * e * m, n * e + n * m),
        Kernel("gelu", 0, 2 * n * m),
        Kernel("fc2_gemm", n * m * e, n * m + n * e),
        Kernel("residual_add2", 0, 3 * n * e),
    )


def vit_layer_kernels(spec: Any) -> tuple[Kernel, ...]:
    """The kernels of one ViT ``layer_specs`` entry (``kind`` in :data:`VIT_KINDS`).

    ``PatchEmbed`` (image H x W x C to n x e): the patch convolution and the position-embedding
    add (which also makes the transposed tokens contiguous). ``TransformerLayer``:
    :func:`transformer_layer_kernels`. ``Head`` (n x e to classes): LayerNorm, mean over
    tokens, classifier."""
    if spec.kind == "PatchEmbed":
        n, e = spec.output_shape
        c = spec.input_shape[2]
        return (
            Kernel(
                "patch_conv", n * e * spec.patch * spec.patch * c, _prod(spec.input_shape) + n * e
            ),
            Kernel("pos_embed_add", 0, 3 * n * e),
        )
    if spec.kind == "TransformerLayer":
        n, e = spec.input_shape
        return transformer_layer_kernels(n, e, spec.heads, spec.head_dim, spec.hidden)
    if spec.kind == "Head":
        n, e = spec.input_shape
        k = spec.output_shape[0]
        return (
            Kernel("layernorm", 0, 2 * n * e),
            Kernel("token_mean", 0, n * e + e),
            Kernel("classifier_gemm", e * k, e + k),
        )
    raise ValueError(f"layer kind {spec.kind!r} is not a ViT layer (one of {VIT_KINDS})")


def _prod(shape: Iterable[int]) -> int:
    p = 1
    for d in shape:
        p *= int(d)
    return p


@dataclass(frozen=True)
class PublishedMember:
    """A member of the published Dynamic-OFA family with its published figures."""

    workload: Workload
    top1: float  # ImageNet top-1 in [0, 1] (published)
    latency_ms: float  # published Xavier NX GPU latency (PyTorch, top GPU frequency)
    resolution: int  # published input resolution
    config: str  # the OFA-MBv3 w1.2 configuration we assume for it (estimate)


def _member(  # noqa: PLR0917 - one positional row per table line
    tag: str, top1: float, ms: float, r: int, macs: float, layers: int, params: float, cfg: str
) -> PublishedMember:
    return PublishedMember(
        Workload(
            f"dynofa-gpu-{tag}", int(macs * 1e6), layers, int(params * 1e6), runtime="torch-dynamic"
        ),
        top1,
        ms,
        r,
        cfg,
    )


#: Published: top-1, latency, resolution (TOOLCHAIN.md, Dynamic-OFA on Xavier NX GPU).
#: Estimated: MMACs / weight layers / M params, from the OFA-MBv3 w1.2 configuration in the last
#: column (d = blocks per stage, k = kernel per stage, e = expand per stage), computed with
#: ``ElasticMobileNetV3('ofa-w1.2').layer_specs``.
PUBLISHED_GPU_FAMILY: tuple[PublishedMember, ...] = (
    _member("a", 0.7420, 41.2, 176, 163.7, 48, 5.18, "r176 d22222 k35555 e44444"),
    _member("b", 0.7497, 45.4, 176, 203.8, 53, 6.45, "r176 d23222 k35555 e44466"),
    _member("c", 0.7613, 49.4, 192, 313.1, 61, 7.31, "r192 d23332 k35577 e46466"),
    _member("d", 0.7754, 51.1, 208, 428.7, 63, 8.41, "r208 d23233 k55577 e66466"),
    _member("e", 0.7835, 56.7, 224, 577.3, 69, 8.61, "r224 d33333 k55577 e66666"),
    _member("f", 0.7903, 61.7, 224, 676.2, 79, 9.32, "r224 d34343 k57577 e66666"),
)

#: The published CPU family only as its two ends (TOOLCHAIN.md: about 72.5 % at 0.5 s to 78.5 %
#: at 1.85 s on the NX CPU). Workloads estimated as for the GPU family (OFA-MBv3 w1.2).
PUBLISHED_CPU_ENDS: tuple[PublishedMember, ...] = (
    PublishedMember(
        Workload("dynofa-cpu-smallest", 111_200_000, 48, 5_080_000, runtime="torch-dynamic"),
        0.725,
        500.0,
        160,
        "r160 d22222 k33333 e33344",
    ),
    PublishedMember(
        Workload("dynofa-cpu-largest", 421_100_000, 84, 9_000_000, runtime="torch-dynamic"),
        0.785,
        1850.0,
        224,
        "r224 d34344 k33355 e34346",
    ),
)
