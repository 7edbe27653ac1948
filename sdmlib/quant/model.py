"""Quantize a UNet2DModel: the float copy → shortcut split → brevitas layers → activation calibration →
(optionally) block reconstruction. The float model is never modified."""

from __future__ import annotations

import copy

from torch import nn

from .attention import quantize_attention
from .calibration import CalibrationSet
from .config import QuantConfig
from .quantizers import calibrate_activations, quantize_layers
from .shortcut import concat_splits, split_shortcuts


def quant_structure(unet: nn.Module, config: QuantConfig, splits: dict[str, int]) -> nn.Module:
    """A copy of `unet` with every Conv2d and Linear swapped for a brevitas layer (and the shortcut splits), not
    calibrated: the skeleton a saved quantizer state is loaded into."""
    model = copy.deepcopy(unet).eval()
    if config.splits_shortcuts:
        split_shortcuts(model, splits, config)
    quantize_layers(model, config)
    if config.attention_matmuls:
        quantize_attention(model, config)
    return model


def quantize_unet(unet: nn.Module, config: QuantConfig, calibration: CalibrationSet, progress: bool = False):
    """The quantized copy of `unet` for `config`, calibrated on `calibration`; returns (model, splits, report)."""
    batches = calibration.batches(config.batch_size)
    device = next(unet.parameters()).device
    x0, t0 = batches[0]
    splits = concat_splits(unet, x0.to(device), t0.to(device)) if config.splits_shortcuts else {}
    model = quant_structure(unet, config, splits)
    calibrate_activations(model, [(x.to(device), t.to(device)) for x, t in batches])
    report = {}
    if config.reconstructs:
        from .reconstruction import reconstruct

        report = reconstruct(unet, model, calibration, config, progress=progress)
    return model.eval(), splits, report
