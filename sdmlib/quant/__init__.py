"""Post-training quantization of (squeezed) diffusion models: PTQ4DM and Q-Diffusion on brevitas.

Layers, by file: `config` (`QuantConfig`, the methods' choices), `quantizers` (brevitas quantizers, the layer
swap, activation calibration), `sampling` (samplers by name, reverse trajectories), `calibration` (the calibration
sets), `shortcut` (Q-Diffusion's shortcut splitting for diffusers' up blocks), `reconstruction` (block
reconstruction with learned rounding), `model` (the whole quantization of a UNet), `state` (save/load with
safetensors), `measure` (errors and samples of the quantized network against the full-precision one).
"""

from .config import METHODS, QuantConfig

__all__ = ["METHODS", "QuantConfig"]
