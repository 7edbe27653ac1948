"""Brevitas quantizers for the three methods, and the swap of every Conv2d and Linear of a UNet for its brevitas
counterpart (first and last convolutions and the time embedding included, as Q-Diffusion does).

Each quantized layer fake-quantizes its weight per output channel and its input per tensor (the activation
quantizer sits on the input of every layer, as in Q-Diffusion's code). Brevitas does the arithmetic; this module
only chooses its quantizers:

- PTQ4DM: symmetric narrow-range integers with the clipping range found by a grid search over 100 candidates
  minimising Σ|x − Q(x)|^p with p = 2.4, as PTQ4DM's code does (brevitas' MSE search with its error replaced:
  `LpSearch`; `search_norm=2` gives brevitas' own squared error);
- Q-Diffusion: asymmetric integers (scale and zero point) from the min and max, weights optionally with learned
  rounding (AdaRound's rectified sigmoid, brevitas' LEARNED_ROUND) for block reconstruction;
- minmax: symmetric integers from the absolute maximum, the plain baseline.

Activation ranges are collected by brevitas' `calibration_mode`, which averages each batch's statistic over the
calibration batches.
"""

from __future__ import annotations

import torch
from brevitas.core.stats import MSE, NegativeMinOrZero
from brevitas.graph.calibrate import calibration_mode
from brevitas.inject.enum import FloatToIntImplType, LearnedRoundImplType, StatsOp
from brevitas.nn import QuantConv2d, QuantLinear
from brevitas.quant import (
    Int8ActPerTensorFloat,
    Int8ActPerTensorFloatMSE,
    Int8WeightPerChannelFloat,
    Int8WeightPerChannelFloatMSE,
    ShiftedUint8ActPerTensorFloat,
    ShiftedUint8WeightPerChannelFloat,
    Uint8ActPerTensorFloat,
    Uint8ActPerTensorFloatMSE,
)
from torch import nn

from .config import QuantConfig

# -- quantizer classes (brevitas injectors), one family per method ---------------------------------------------


class _AbsMaxAct(Int8ActPerTensorFloat):
    scaling_stats_op = StatsOp.MAX  # |x| max: symmetric min-max


class _MinMaxAct(ShiftedUint8ActPerTensorFloat):
    scaling_stats_op = StatsOp.MIN_MAX  # asymmetric: the range [min(x, 0), max(x)]
    zero_point_stats_impl = NegativeMinOrZero


class _MaxUnsignedAct(Uint8ActPerTensorFloat):
    scaling_stats_op = StatsOp.MAX  # [0, max x]: for values known to be non-negative


_WEIGHT_QUANT = {
    "ptq4dm": Int8WeightPerChannelFloatMSE,
    "qdiffusion": ShiftedUint8WeightPerChannelFloat,
    "minmax": Int8WeightPerChannelFloat,
}
_ACT_QUANT = {"ptq4dm": Int8ActPerTensorFloatMSE, "qdiffusion": _MinMaxAct, "minmax": _AbsMaxAct}
# Attention probabilities lie in [0, 1]: each method's activation quantizer, unsigned (Q-Diffusion's asymmetric
# min-max already starts its range at 0).
_PROBABILITY_QUANT = {"ptq4dm": Uint8ActPerTensorFloatMSE, "qdiffusion": _MinMaxAct, "minmax": _MaxUnsignedAct}


class LpSearch(MSE):
    """Brevitas' grid search over clipping ranges, minimising Σ|x − Q(x)|^p instead of the squared error (PTQ4DM's
    code: p = 2.4, which weighs large errors a little more and so clips a little less)."""

    # Brevitas' injector fills arguments by name, so the signature is spelled out (no *args/**kwargs).
    def __init__(self, proxy_module, mse_init_op, inner_stats_input_view_shape_impl, mse_iters: int, mse_base_op,
                 search_norm: float, stats_reduce_dim=None, mse_search_method: str = "fibonacci",
                 bipolar_search: bool = False):
        super().__init__(proxy_module, mse_init_op, inner_stats_input_view_shape_impl, mse_iters, mse_base_op,
                         stats_reduce_dim, mse_search_method, bipolar_search)
        self.search_norm = search_norm

    def mse_loss_fn(self, x, quant_value):
        loss = (x - quant_value).abs().pow(self.search_norm)
        if self.stats_reduce_dim is not None:
            return torch.sum(self.input_view_shape_impl(loss), dim=self.stats_reduce_dim)
        return torch.sum(loss)


def weight_quantizer(method: str, bits: int, learned_round: bool = False, mse_candidates: int = 100,
                     search_norm: float = 2.4) -> type:
    """The brevitas weight quantizer of `method` at `bits` bits (per output channel); `mse_candidates` and
    `search_norm`: the number of clipping ranges the search tries and the p of its L_p error (PTQ4DM only)."""
    attributes = {"bit_width": bits} | _mse_search(_WEIGHT_QUANT[method], mse_candidates, search_norm)
    if learned_round:
        attributes |= {
            "float_to_int_impl_type": FloatToIntImplType.LEARNED_ROUND,
            "learned_round_impl_type": LearnedRoundImplType.HARD_SIGMOID,
        }
    return type(f"{method}W{bits}", (_WEIGHT_QUANT[method],), attributes)


def activation_quantizer(method: str, bits: int, mse_candidates: int = 100, search_norm: float = 2.4) -> type:
    """The brevitas activation quantizer of `method` at `bits` bits (per tensor)."""
    base = _ACT_QUANT[method]
    return type(f"{method}A{bits}", (base,), {"bit_width": bits} | _mse_search(base, mse_candidates, search_norm))


def probability_quantizer(method: str, bits: int, mse_candidates: int = 100, search_norm: float = 2.4) -> type:
    """The quantizer of the attention probabilities (softmax output, in [0, 1]) of `method` at `bits` bits."""
    base = _PROBABILITY_QUANT[method]
    return type(f"{method}P{bits}", (base,), {"bit_width": bits} | _mse_search(base, mse_candidates, search_norm))


def _mse_search(base: type, candidates: int, search_norm: float) -> dict:
    """Brevitas' MSE grid search tries the clipping ranges max|x|·j/candidates, j = 1..candidates; its settings
    live in a sub-injector (`mse_scale`), which is why it is replaced rather than set."""
    if "mse_scale" not in dir(base):
        return {}
    return {"mse_scale": base.mse_scale.let(mse_iters=candidates, stats_impl=LpSearch, search_norm=search_norm)}


# -- swapping layers -------------------------------------------------------------------------------------------


def quant_layer(layer: nn.Module, config: QuantConfig) -> nn.Module:
    """The brevitas counterpart of one float nn.Conv2d or nn.Linear, with its weights."""
    kinds = {
        "weight_quant": weight_quantizer(
            config.method, config.weight_bits, learned_round=config.reconstructs, mse_candidates=config.mse_candidates,
            search_norm=config.search_norm,
        ),
        "input_quant": activation_quantizer(config.method, config.activation_bits, config.mse_candidates,
                                            config.search_norm),
        "return_quant_tensor": False,
        "device": layer.weight.device,
        "dtype": layer.weight.dtype,
    }
    if isinstance(layer, nn.Conv2d):
        if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
            raise NotImplementedError(f"padding {layer.padding!r} / {layer.padding_mode!r} is not supported")
        quantized = QuantConv2d(
            layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride, padding=layer.padding,
            dilation=layer.dilation, groups=layer.groups, bias=layer.bias is not None, **kinds,
        )
    elif isinstance(layer, nn.Linear):
        quantized = QuantLinear(layer.in_features, layer.out_features, bias=layer.bias is not None, **kinds)
    else:
        raise TypeError(f"cannot quantize {type(layer).__name__}; only nn.Conv2d and nn.Linear")
    with torch.no_grad():
        quantized.weight.copy_(layer.weight)
        if layer.bias is not None:
            quantized.bias.copy_(layer.bias)
    return quantized


def float_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every nn.Conv2d and nn.Linear of `model` that is not yet quantized, by qualified name."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear)) and not isinstance(module, (QuantConv2d, QuantLinear))
    }


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def quantize_layers(model: nn.Module, config: QuantConfig, skip: tuple[str, ...] = ()) -> nn.Module:
    """Replace, in place, every float Conv2d/Linear of `model` (except the names in `skip`) by a brevitas layer."""
    for name, layer in float_layers(model).items():
        if name not in skip:
            set_submodule(model, name, quant_layer(layer, config))
    return model


def quant_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if isinstance(m, (QuantConv2d, QuantLinear))}


@torch.no_grad()
def calibrate_activations(model: nn.Module, inputs: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Collect every activation quantizer's range on the calibration batches [(x_t, t), ...] (brevitas'
    calibration mode: float forward passes; weight quantization off while the statistics are collected)."""
    model.eval()
    with calibration_mode(model):
        for sample, timestep in inputs:
            model(sample, timestep)
    model.eval()
