"""Medical image encoders built from MONAI networks, one class for 2D and 3D via ``spatial_dims``.

Input x: (B, C, H, W) when ``spatial_dims=2``, (B, C, D, H, W) when 3.
Output: {"embedding": (B, D_emb), "sequence": (B, T, D_seq)} where, from the
final feature map (B, F, [D',] H', W'):

* ``embedding`` is its global average (the input of the network's classifier);
* ``sequence`` is one vector per row, the average over width, rows in raster
  order (T = H'); in 3D depth-major rows (T = D' * H'). CPC's image variant
  predicts lower rows from upper ones.

The classification heads of the MONAI networks are never built or dropped, so
every parameter of an encoder is used by its outputs. Defaults are small
(ResNet widths 16..128, DenseNet growth 8) so that CPU runs are quick; the
published sizes are ``width=64`` and ``init_features=64, growth_rate=32``.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from einops import reduce
from monai.networks.layers.factories import Conv
from monai.networks.nets import DenseNet121 as MonaiDenseNet121
from monai.networks.nets import ResNet as MonaiResNet
from torch import nn

from registry import register


def norm_layer(norm: str):
    """MONAI's norm argument for "batch" or "instance" (affine, so MONAI's ResNet init can set its weights).

    Raises:
        ValueError: another name.
    """
    if norm not in ("batch", "instance"):
        raise ValueError(f"norm must be 'batch' or 'instance', got '{norm}'")
    return "batch" if norm == "batch" else ("instance", {"affine": True})


class MedicalEncoder(nn.Module):
    """A MONAI feature extractor ``self.features`` (x -> final map) plus pooled outputs.

    Raises (forward):
        ValueError: x does not have ``spatial_dims + 2`` dimensions or ``in_channels`` channels.
    """

    def __init__(self, features: nn.Module, in_channels: int, spatial_dims: int, dim: int):
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        self.features = features
        self.in_channels, self.spatial_dims = in_channels, spatial_dims
        self.dims = {"embedding": dim, "sequence": dim}

    def forward(self, x: torch.Tensor) -> dict:
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            axes = "(B, C, H, W)" if self.spatial_dims == 2 else "(B, C, D, H, W)"
            raise ValueError(f"expected x of shape {axes} with C = {self.in_channels}, got {tuple(x.shape)}")
        fmap = self.features(x)
        rows = "b f h w -> b h f" if self.spatial_dims == 2 else "b f d h w -> b (d h) f"
        return {"embedding": reduce(fmap, "b f ... -> b f", "mean"), "sequence": reduce(fmap, rows, "mean")}


def _resnet(block: str, layers, in_channels: int, spatial_dims: int, width: int, stem_kernel: int,
            stem_stride: int, max_pool: bool, norm: str) -> nn.Module:
    """A MONAI ResNet without its classifier: x -> layer4 output (B, 8 * width * expansion, ...)."""
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
    """

    block, layers = "basic", (2, 2, 2, 2)

    def __init__(self, in_channels: int = 1, spatial_dims: int = 2, width: int = 16, stem_kernel: int = 7,
                 stem_stride: int = 1, max_pool: bool = True, norm: str = "batch"):
        expansion = 4 if self.block == "bottleneck" else 1
        features = _resnet(self.block, self.layers, in_channels, spatial_dims, width, stem_kernel, stem_stride,
                           max_pool, norm)
        super().__init__(features, in_channels, spatial_dims, 8 * width * expansion)


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

    Embedding and sequence dim: the channels of the last dense block (256 at the defaults).
    """

    def __init__(self, in_channels: int = 1, spatial_dims: int = 2, init_features: int = 16, growth_rate: int = 8,
                 bn_size: int = 4, stem_stride: int = 1, norm: str = "batch"):
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
        super().__init__(_ReluAfter(OrderedDict(features.named_children())), in_channels, spatial_dims, dim)
