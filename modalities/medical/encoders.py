"""Medical image encoders built from MONAI networks, one class for 2D and 3D via ``spatial_dims``.

Input x: (B, C, H, W) when ``spatial_dims=2``, (B, C, D, H, W) when 3.
Output: {"embedding": (B, D_emb), "sequence": (B, T, D_emb)}:

* ``embedding`` is the global average of the final feature map of the whole
  image (the input of the network's classifier), or with ``embedding="patches"``
  the mean of the patch vectors below (how CPC v2 evaluates a patch encoder;
  medical.yaml sets it for CPC, whose encoder never sees a whole image);
* ``sequence`` is CPC's image variant (van den Oord et al. 2018, sec. 3.2;
  Henaff et al. 2020): the image is cut into a grid of overlapping patches
  (``patch_size``, ``patch_stride``), every patch is encoded *independently*
  by the same network and average-pooled, and the patch vectors of one grid
  row are averaged: T = number of patch rows, top to bottom (along H; in 3D
  averaged over depth and width). Encoding patches apart is what makes
  "predict the rows below" a real task: rows of one whole-image feature map
  already see the rows below them through the receptive field. In training,
  each patch's contrast and brightness are jittered (``patch_jitter``, CPC
  v2's per-patch augmentation) so rows cannot be matched by image-wide
  intensity alone: on the built-in data this lifts CPC's probe from 0.32 to 0.38.

Both are computed on first access (``LazyOutputs``), so objectives that read
only ``embedding`` never pay for the patch grid, and CPC never pays for the
whole-image pass. With ``embedding="patches"`` the embedding is ready without
another pass once the grid exists (``LazyOutputs.ready``): the online classifier
of ``train.online_eval`` reads it after CPC's forward.

The classification heads of the MONAI networks are never built or dropped, so
every parameter of an encoder is used by its outputs. Defaults are small
(ResNet widths 16..128, DenseNet growth 8) so that CPU runs are quick; the
published sizes are ``width=64`` and ``init_features=64, growth_rate=32``.
"""
from __future__ import annotations

import functools
from collections import OrderedDict

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import nn

from core.registry import register


def norm_layer(norm: str):
    """MONAI's norm argument for "batch" or "instance" (affine, so MONAI's ResNet init can set its weights).

    Raises:
        ValueError: another name.
    """
    if norm not in ("batch", "instance"):
        raise ValueError(f"norm must be 'batch' or 'instance', got '{norm}'")
    return "batch" if norm == "batch" else ("instance", {"affine": True})


class LazyOutputs(dict):
    """A dict of encoder outputs whose values are computed on first access and kept.

    ``LazyOutputs(embedding=fn, sequence=fn)``: ``out["sequence"]`` calls its
    function once. ``in``, ``keys()`` and ``len()`` see every declared output.
    ``cheap``: {name: fn -> bool}, whether that output can now be had from what is already computed
    (no new pass of the network); ``ready(name)`` asks it.
    """

    def __init__(self, cheap: dict | None = None, **factories):
        super().__init__()
        self._factories, self._cheap = factories, cheap or {}

    def ready(self, key) -> bool:
        """Whether ``self[key]`` is computed already or costs no new pass of the network (e.g. the patch
        embedding once the patch grid of ``sequence`` exists): the online classifier reads it then."""
        return dict.__contains__(self, key) or (key in self._cheap and self._cheap[key]())

    def __missing__(self, key):
        if key not in self._factories:
            raise KeyError(key)
        value = self[key] = self._factories[key]()
        return value

    def __contains__(self, key) -> bool:
        return key in self._factories

    def get(self, key, default=None):
        return self[key] if key in self._factories else default

    def keys(self):
        return self._factories.keys()

    def __len__(self) -> int:
        return len(self._factories)


class MedicalEncoder(nn.Module):
    """A MONAI feature extractor ``self.features`` (x -> final map) plus pooled outputs.

    Args:
        patch_size, patch_stride: the patch grid (pixels per side, step between patches).
        patch_jitter: in training, each patch's contrast and brightness scaled by 1 + U(-j, j).
        embedding: "image" (global average of the whole image's features) or "patches" (mean over the grid).
        dropout: in training, nn.Dropout with this p on the final feature map (of the image or of
            each patch) before it is pooled; 0 (default) leaves the outputs unchanged bit for bit.

    Raises (forward):
        ValueError: x does not have ``spatial_dims + 2`` dimensions or ``in_channels`` channels.
        ValueError (when ``sequence`` is read): an image side is smaller than ``patch_size``.
    """

    def __init__(self, features: nn.Module, in_channels: int, spatial_dims: int, dim: int, patch_size: int = 16,
                 patch_stride: int = 8, patch_jitter: float = 0.6, embedding: str = "image", dropout: float = 0.0):
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if embedding not in ("image", "patches"):
            raise ValueError(f"embedding must be 'image' or 'patches', got '{embedding}'")
        if not 0 < patch_stride <= patch_size:
            raise ValueError(f"need 0 < patch_stride <= patch_size, got {patch_stride} and {patch_size}")
        self.features = features
        self.dropout = nn.Dropout(dropout)  # p = 0 returns its input untouched and draws no random numbers
        self.in_channels, self.spatial_dims = in_channels, spatial_dims
        self.patch_size, self.patch_stride, self.patch_jitter = patch_size, patch_stride, patch_jitter
        self.embedding = embedding
        self.dims = {"embedding": dim, "sequence": dim}

    def forward(self, x: torch.Tensor) -> LazyOutputs:
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            axes = "(B, C, H, W)" if self.spatial_dims == 2 else "(B, C, D, H, W)"
            raise ValueError(f"expected x of shape {axes} with C = {self.in_channels}, got {tuple(x.shape)}")
        grid = functools.cache(lambda: self.patch_grid(x))  # (B, rows, patches per row, F), one pass at most
        if self.embedding == "patches":  # a mean over the grid: cheap once the grid exists (CPC computed it)
            embedding = lambda: reduce(grid(), "b r p f -> b f", "mean")
            cheap = {"embedding": lambda: grid.cache_info().currsize > 0}
        else:
            embedding = lambda: reduce(self.dropout(self.features(x)), "b f ... -> b f", "mean")
            cheap = {}
        return LazyOutputs(cheap, embedding=embedding, sequence=lambda: reduce(grid(), "b r p f -> b r f", "mean"))

    def jitter(self, patches: torch.Tensor) -> torch.Tensor:
        """In training, each patch's contrast and brightness scaled and shifted at random (CPC v2's
        per-patch augmentation): rows can no longer be matched by image-wide intensity alone."""
        if not self.training or not self.patch_jitter:
            return patches
        shape = (len(patches),) + (1,) * (patches.dim() - 1)
        mean = patches.mean(dim=tuple(range(1, patches.dim())), keepdim=True)
        gain = 1 + self.patch_jitter * (2 * torch.rand(shape, device=patches.device) - 1)
        shift = self.patch_jitter * (2 * torch.rand(shape, device=patches.device) - 1)
        return (patches - mean) * gain + mean * (1 + shift)

    def patch_grid(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, [D,] H, W) -> (B, rows, patches per row, F): every patch encoded on its own and
        average-pooled; rows run along H (in 3D a row holds its patches of every depth and column)."""
        size, stride = self.patch_size, self.patch_stride
        if min(x.shape[2:]) < size:
            raise ValueError(f"the patch grid needs images of at least {size} pixels per side, got "
                             f"{tuple(x.shape[2:])}; lower the encoder's patch_size")
        patches = x
        for axis in range(2, x.dim()):  # unfold appends one patch axis per spatial axis
            patches = patches.unfold(axis, size, stride)
        if self.spatial_dims == 2:  # (B, C, Gh, Gw, p, p)
            grid = self.jitter(rearrange(patches, "b c gh gw ph pw -> (b gh gw) c ph pw"))
            pooled = reduce(self.dropout(self.features(grid)), "n f ... -> n f", "mean")
            return rearrange(pooled, "(b gh gw) f -> b gh gw f", b=len(x), gh=patches.shape[2])
        grid = self.jitter(rearrange(patches, "b c gd gh gw pd ph pw -> (b gd gh gw) c pd ph pw"))
        pooled = reduce(self.dropout(self.features(grid)), "n f ... -> n f", "mean")
        return rearrange(pooled, "(b gd gh gw) f -> b gh (gd gw) f", b=len(x), gd=patches.shape[2],
                         gh=patches.shape[3])


def _resnet(block: str, layers, in_channels: int, spatial_dims: int, width: int, stem_kernel: int,
            stem_stride: int, max_pool: bool, norm: str) -> nn.Module:
    """A MONAI ResNet without its classifier: x -> layer4 output (B, 8 * width * expansion, ...)."""
    # MONAI is imported where it is used (loaders.py says why).
    from monai.networks.nets import ResNet as MonaiResNet

    if width < 1:
        raise ValueError(f"width must be positive, got {width}")
    net = MonaiResNet(block, list(layers), [width, 2 * width, 4 * width, 8 * width], spatial_dims=spatial_dims,
                      n_input_channels=in_channels, conv1_t_size=stem_kernel, conv1_t_stride=stem_stride,
                      no_max_pool=not max_pool, feed_forward=False, norm=norm_layer(norm))
    names = ["conv1", "bn1", "act", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    names = [n for n in names if n != "maxpool" or max_pool]
    return nn.Sequential(OrderedDict((name, getattr(net, name)) for name in names))


class ResNetEncoder(MedicalEncoder):
    """MONAI ResNet (He et al. 2016; MedicalNet layout) features; see the module docstring for shapes.

    Args:
        in_channels: image channels; spatial_dims: 2 or 3.
        width: channels of the first stage; the stages have (1, 2, 4, 8) x width (64 in the paper).
        stem_kernel, stem_stride: the first convolution (stride 1 keeps 64-pixel images 4x4 at the end).
        max_pool: the 3x3 stride-2 pooling after the stem.
        norm: MONAI norm name, "batch" or "instance".
        patch_size, patch_stride, patch_jitter, embedding: the patch grid (see the module docstring).
        dropout: on the final feature map in training (see MedicalEncoder).
    """

    block, layers = "basic", (2, 2, 2, 2)

    def __init__(self, in_channels: int = 1, spatial_dims: int = 2, width: int = 16, stem_kernel: int = 7,
                 stem_stride: int = 1, max_pool: bool = True, norm: str = "batch", patch_size: int = 16,
                 patch_stride: int = 8, patch_jitter: float = 0.6, embedding: str = "image", dropout: float = 0.0):
        expansion = 4 if self.block == "bottleneck" else 1
        features = _resnet(self.block, self.layers, in_channels, spatial_dims, width, stem_kernel, stem_stride,
                           max_pool, norm)
        super().__init__(features, in_channels, spatial_dims, 8 * width * expansion, patch_size, patch_stride,
                         patch_jitter, embedding, dropout)


@register("encoder", "resnet18", modality="medical", outputs=("embedding", "sequence"))
class ResNet18(ResNetEncoder):
    """MONAI ResNet-18 features (basic blocks 2-2-2-2), 2D or 3D."""

    block, layers = "basic", (2, 2, 2, 2)


@register("encoder", "resnet34", modality="medical", outputs=("embedding", "sequence"))
class ResNet34(ResNetEncoder):
    """MONAI ResNet-34 features (basic blocks 3-4-6-3), 2D or 3D."""

    block, layers = "basic", (3, 4, 6, 3)


@register("encoder", "resnet50", modality="medical", outputs=("embedding", "sequence"))
class ResNet50(ResNetEncoder):
    """MONAI ResNet-50 features (bottleneck blocks 3-4-6-3, 4x expansion), 2D or 3D."""

    block, layers = "bottleneck", (3, 4, 6, 3)


class _ReluAfter(nn.Sequential):
    """DenseNet features followed by the ReLU that MONAI keeps in its classifier."""

    def forward(self, x):
        return F.relu(super().forward(x))


@register("encoder", "densenet121", modality="medical", outputs=("embedding", "sequence"))
class DenseNet121(MedicalEncoder):
    """MONAI DenseNet-121 features (Huang et al. 2017; blocks 6-12-24-16), 2D or 3D.

    Args:
        in_channels: image channels; spatial_dims: 2 or 3.
        init_features: stem channels (64 in the paper); growth_rate: channels per dense layer (32).
        bn_size: bottleneck factor of each dense layer.
        stem_stride: stride of the 7x7 stem (MONAI and the paper use 2; 1 keeps 64-pixel images 4x4 at the end).
        norm: MONAI norm name, "batch" or "instance".
        patch_size, patch_stride, patch_jitter, embedding: the patch grid (see the module docstring).
        dropout: on the final feature map in training (see MedicalEncoder).

    Embedding and sequence dim: the channels of the last dense block (256 at the defaults).
    """

    def __init__(self, in_channels: int = 1, spatial_dims: int = 2, init_features: int = 16, growth_rate: int = 8,
                 bn_size: int = 4, stem_stride: int = 1, norm: str = "batch", patch_size: int = 16,
                 patch_stride: int = 8, patch_jitter: float = 0.6, embedding: str = "image", dropout: float = 0.0):
        from monai.networks.layers.factories import Conv
        from monai.networks.nets import DenseNet121 as MonaiDenseNet121

        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        net = MonaiDenseNet121(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=1,
                               init_features=init_features, growth_rate=growth_rate, bn_size=bn_size,
                               norm=norm_layer(norm))
        features = net.features
        if stem_stride != 2:
            features.conv0 = Conv[Conv.CONV, spatial_dims](in_channels, init_features, kernel_size=7,
                                                           stride=stem_stride, padding=3, bias=False)
            nn.init.kaiming_normal_(features.conv0.weight)
        dim = net.class_layers.out.in_features
        super().__init__(_ReluAfter(OrderedDict(features.named_children())), in_channels, spatial_dims, dim,
                         patch_size, patch_stride, patch_jitter, embedding, dropout)
