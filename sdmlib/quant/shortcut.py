"""Q-Diffusion's shortcut splitting for diffusers' UNet2DModel.

Every up-block resnet of diffusers reads torch.cat([h, skip], dim=1): the upsampled deep features h and the
encoder's skip features, whose ranges can differ by orders of magnitude. The layer that reads this concatenation
directly is the resnet's 1×1 `conv_shortcut` (the 3×3 `conv1` reads it after GroupNorm and SiLU, which put both
parts on a common scale). Because a convolution is linear in its input channels,

    conv(h ⊕ skip, W) = conv(h, W_h) + conv(skip, W_skip),

the split layer is two brevitas convolutions, each with its own activation quantizer and its own per-channel weight
quantizer: Q(X) = Q_{X1}(X1) ⊕ Q_{X2}(X2), Q(W) = Q_{W1}(W1) ⊕ Q_{W2}(W2), as in Q-Diffusion's code, which splits
the same layer (its `skip_connection`).
"""

from __future__ import annotations

import torch
from torch import nn

from .config import QuantConfig
from .quantizers import quant_layer


class SplitConv2d(nn.Module):
    """A convolution over a concatenation [x[:, :split], x[:, split:]] written as two convolutions (exact in float)."""

    def __init__(self, conv: nn.Conv2d, split: int):
        super().__init__()
        if not 0 < split < conv.in_channels or conv.groups != 1:
            raise ValueError(f"split must lie in (0, {conv.in_channels}) for an ungrouped conv, got {split}")
        self.split = split
        self.first = _part(conv, slice(0, split), with_bias=True)
        self.second = _part(conv, slice(split, conv.in_channels), with_bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_h + C_skip, H, W)
        return self.first(x[:, : self.split]) + self.second(x[:, self.split :])


def _part(conv: nn.Conv2d, channels: slice, with_bias: bool) -> nn.Conv2d:
    part = nn.Conv2d(
        channels.stop - channels.start, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
        dilation=conv.dilation, bias=with_bias and conv.bias is not None, device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    with torch.no_grad():
        part.weight.copy_(conv.weight[:, channels])
        if part.bias is not None:
            part.bias.copy_(conv.bias)
    return part


@torch.no_grad()
def concat_splits(unet: nn.Module, sample: torch.Tensor, timestep: torch.Tensor) -> dict[str, int]:
    """{qualified name of an up-block resnet's conv_shortcut: number of channels of h in its input h ⊕ skip}.

    Measured, not assumed: one forward pass records the skip tensors each up block receives; its j-th resnet
    concatenates the j-th last of them.
    """
    splits: dict[str, int] = {}
    handles = []
    for block_index, block in enumerate(getattr(unet, "up_blocks", [])):

        def record(module, args, kwargs, block_index=block_index):
            skips = kwargs.get("res_hidden_states_tuple", args[1] if len(args) > 1 else None)
            for j, resnet in enumerate(module.resnets):
                shortcut = getattr(resnet, "conv_shortcut", None)
                if shortcut is not None:
                    name = f"up_blocks.{block_index}.resnets.{j}.conv_shortcut"
                    splits[name] = shortcut.in_channels - skips[-1 - j].shape[1]

        handles.append(block.register_forward_pre_hook(record, with_kwargs=True))
    try:
        unet(sample, timestep)
    finally:
        for handle in handles:
            handle.remove()
    return splits


def split_shortcuts(unet: nn.Module, splits: dict[str, int], config: QuantConfig | None = None) -> nn.Module:
    """Replace each named conv_shortcut by a SplitConv2d (its two parts quantized with `config` if given)."""
    for name, split in splits.items():
        parent_name, _, child = name.rpartition(".")
        parent = unet.get_submodule(parent_name)
        layer = SplitConv2d(getattr(parent, child), split)
        if config is not None:
            layer.first = quant_layer(layer.first, config)
            layer.second = quant_layer(layer.second, config)
        setattr(parent, child, layer)
    return unet


@torch.no_grad()
def concat_ranges(unet: nn.Module, splits: dict[str, int], sample: torch.Tensor, timestep: torch.Tensor) -> dict:
    """{layer name: (max |h|, max |skip|)} of the concatenations on one batch: how different the two ranges are."""
    from .reconstruction import capture

    inputs = capture(unet, splits, [(sample, timestep)], inputs=True)
    return {name: _part_ranges(inputs[name][0], split) for name, split in splits.items()}


def _part_ranges(x: torch.Tensor, split: int) -> tuple[float, float]:
    """(max |h|, max |skip|) of a concatenation h ⊕ skip split after `split` channels."""
    return float(x[:, :split].abs().max()), float(x[:, split:].abs().max())


@torch.no_grad()
def split_errors(unet: nn.Module, splits: dict[str, int], batches, config: QuantConfig) -> dict[str, dict]:
    """What the split saves, layer by layer, on a trained UNet: each split layer's float input h ⊕ skip is captured
    on the calibration `batches` [(x_t, t), ...]; the layer is quantized once with one quantizer for the whole
    concatenation and once split (`config`'s quantizers, activation ranges calibrated on the same inputs), and the
    relative output error ‖y_q − y‖/‖y‖ of each is measured against the float layer. Returns {name: {"h_range",
    "skip_range" (max |·| of each part), "error_single", "error_split"}}."""
    from .quantizers import calibrate_activations
    from .reconstruction import capture

    inputs = capture(unet, splits, batches, inputs=True)
    results = {}
    for name, split in splits.items():
        conv, xs = unet.get_submodule(name), inputs[name]
        single, divided = _Apply(quant_layer(conv, config)), _Apply(SplitConv2d(conv, split))
        divided.layer.first = quant_layer(divided.layer.first, config)
        divided.layer.second = quant_layer(divided.layer.second, config)
        for layer in (single, divided):
            calibrate_activations(layer, [(x, None) for x in xs])
        reference = torch.cat([conv(x) for x in xs])
        error = {key: float((torch.cat([layer(x, None) for x in xs]) - reference).norm() / reference.norm())
                 for key, layer in (("error_single", single), ("error_split", divided))}
        h_range, skip_range = _part_ranges(torch.cat(xs), split)
        results[name] = {"h_range": h_range, "skip_range": skip_range, **error}
    return results


class _Apply(nn.Module):
    """One layer behind the (x, t) signature `calibrate_activations` calls models with."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor, t) -> torch.Tensor:
        return self.layer(x)
