"""Q-Diffusion's block reconstruction (BRECQ-style), on brevitas' learned rounding.

Units, in forward order: every diffusers ResnetBlock2D and Attention block (a "block"), and layer by layer every
other quantized layer (conv_in, the time embedding, down/upsamplers, conv_out). For each unit, in turn:

1. its inputs are taken from the quantized network (earlier units already reconstructed) and its targets from the
   full-precision network, on the calibration set (Q-Diffusion: quantized inputs, full-precision targets);
2. AdaRound: each weight's rounding direction h(V) ∈ [0, 1] (rectified sigmoid, brevitas' HARD_SIGMOID learned
   round) is learned by Adam on ‖block_q(x) − block(x)‖² + λ Σ (1 − |2h(V) − 1|^β), λ = rounding_weight, β annealed
   from 20 to 2 after a 20 % warm-up without the regulariser; V starts where h(V) equals the fractional part, so
   iteration 0 is round-to-nearest;
3. the rounding is frozen (hard), then the unit's activation step sizes are learned on the same squared error
   (Adam, lr 4e-4, cosine, Q-Diffusion's schedule).
"""

from __future__ import annotations

import functools
import time

import torch
from brevitas.core.function_wrapper.learned_round import LearnedRoundHardSigmoid, LearnedRoundSte
from brevitas.nn import QuantConv2d, QuantLinear
from diffusers.models.attention_processor import Attention
from diffusers.models.resnet import ResnetBlock2D
from torch import nn
from tqdm.auto import tqdm

from .calibration import CalibrationSet
from .config import QuantConfig
from .quantizers import quant_layers

BLOCK_TYPES = (ResnetBlock2D, Attention)
WARMUP = 0.2  # Q-Diffusion: no rounding regulariser for the first 20 % of iterations
BETA_START, BETA_END = 20.0, 2.0
ROUNDING_LR = 1e-3  # AdaRound's
STEP_SIZE_LR = 4e-4  # Q-Diffusion's


def reconstruction_units(model: nn.Module) -> list[str]:
    """Names of the units: resnet and attention blocks, and every quantized layer outside them, in module order."""
    blocks = [name for name, m in model.named_modules() if isinstance(m, BLOCK_TYPES)]
    inside = lambda name: any(name.startswith(block + ".") for block in blocks)  # noqa: E731
    layers = [name for name in quant_layers(model) if not inside(name)]
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    return sorted(blocks + layers, key=order.__getitem__)


class _Stop(Exception):
    """Raised by a capture hook: nothing after the unit is needed, so the forward pass ends there."""


@torch.no_grad()
def _capture_inputs(model: nn.Module, name: str, batches) -> list:
    """The (args, kwargs) the submodule `name` receives on each calibration batch."""
    captured = []

    def hook(module, args, kwargs):
        captured.append((args, kwargs))
        raise _Stop

    handle = model.get_submodule(name).register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for x, t in batches:
            try:
                model(x, t)
            except _Stop:
                pass
    finally:
        handle.remove()
    return captured


@torch.no_grad()
def capture(model: nn.Module, names, batches, inputs: bool = False) -> dict[str, list]:
    """The outputs (or, with `inputs`, the first inputs) of every submodule in `names` on each calibration batch
    [(x_t, t), ...], in one pass per batch."""
    captured: dict[str, list] = {name: [] for name in names}

    def first(value):
        return value[0] if isinstance(value, tuple) else value

    def hook(module, args, output=None, name=""):
        captured[name].append(first(args if inputs else output))

    handles = [
        model.get_submodule(name).register_forward_pre_hook(functools.partial(hook, name=name)) if inputs
        else model.get_submodule(name).register_forward_hook(functools.partial(hook, name=name))
        for name in names
    ]
    try:
        for x, t in batches:
            model(x, t)
    finally:
        for handle in handles:
            handle.remove()
    return captured


def rounding_regulariser(model: nn.Module, beta: float) -> torch.Tensor:
    """AdaRound's Σ (1 − |2h(V) − 1|^β) over the learned roundings of `model`."""
    total = torch.zeros(())
    for module in model.modules():
        if isinstance(module, LearnedRoundSte):
            h = module.learned_round_impl(module.value)
            total = total + (1 - (2 * h - 1).abs().pow(beta)).sum()
    return total


@torch.no_grad()
def init_rounding(unit: nn.Module) -> None:
    """Start each learned rounding at round-to-nearest: h(V) = frac(w/s + z) (AdaRound's initialisation)."""
    for layer in quant_layers(unit).values() if not isinstance(unit, (QuantConv2d, QuantLinear)) else [unit]:
        learned = [m for m in layer.weight_quant.modules() if isinstance(m, LearnedRoundSte)]
        if not learned:
            continue
        quant = layer.quant_weight()
        scale, zero_point = quant.scale, quant.zero_point
        scaled = layer.weight / scale + (zero_point if zero_point is not None else 0)
        rest = (scaled - scaled.floor()).clamp(0.01, 0.99)
        impl = learned[0].learned_round_impl  # h(V) = clamp(sigmoid(V)(ζ − γ) + γ, 0, 1)
        zeta, gamma = impl.learned_round_zeta, impl.learned_round_gamma
        learned[0].value.copy_(-torch.log((zeta - gamma) / (rest - gamma) - 1).reshape(learned[0].value.shape))


def _set_soft_rounding(unit: nn.Module, soft: bool) -> None:
    for module in unit.modules():
        if isinstance(module, LearnedRoundHardSigmoid):
            module.train(soft)


def _unit_error(unit, inputs, targets) -> float:
    with torch.no_grad():
        errors = [((_output(unit, a, k) - y) ** 2).mean() for (a, k), y in zip(inputs, targets)]
    return float(torch.stack(errors).mean())


def _output(unit, args, kwargs) -> torch.Tensor:
    out = unit(*args, **kwargs)
    return out[0] if isinstance(out, tuple) else out


def _stack(captured: list):
    """Join the captured per-batch values along the batch dimension (tensors), keeping other values as they are."""
    first = captured[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(captured)
    if isinstance(first, tuple):
        return tuple(_stack([c[i] for c in captured]) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: _stack([c[k] for c in captured]) for k in first}
    return first


def _take(value, rows: torch.Tensor):
    if isinstance(value, torch.Tensor):
        return value[rows]
    if isinstance(value, tuple):
        return tuple(_take(v, rows) for v in value)
    if isinstance(value, dict):
        return {k: _take(v, rows) for k, v in value.items()}
    return value


def _minibatches(inputs, targets, size: int, generator):
    """An endless stream of random minibatches (args, kwargs, target) of `size` rows of the captured set."""
    args, kwargs = _stack([a for a, _ in inputs]), _stack([k for _, k in inputs])
    target = torch.cat(targets)
    n = len(target)
    while True:
        rows = torch.randint(n, (min(size, n),), generator=generator)
        yield _take(args, rows), _take(kwargs, rows), target[rows]


def is_step_size(name: str) -> bool:
    """Whether parameter `name` is an activation quantizer's step size (brevitas: input_quant of a layer,
    act_quant of a QuantIdentity)."""
    return ("input_quant." in name or "act_quant." in name) and name.endswith("scaling_impl.value")


def reconstruction_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Q-Diffusion's ‖·‖²: squared error summed over a sample's features, averaged over the batch."""
    return (output - target).pow(2).flatten(1).sum(1).mean()


def reconstruct_unit(unit: nn.Module, inputs, targets, config: QuantConfig, generator) -> dict:
    """AdaRound, then activation step sizes, on one unit; returns its output error before and after."""
    before = _unit_error(unit, inputs, targets)
    init_rounding(unit)
    rounding = [m.value for m in unit.modules() if isinstance(m, LearnedRoundSte)]
    stream = _minibatches(inputs, targets, config.reconstruction_batch_size, generator)
    iterations = config.reconstruction_iterations
    if rounding and iterations:
        optimizer = torch.optim.Adam(rounding, lr=ROUNDING_LR)
        _set_soft_rounding(unit, True)
        for step in range(iterations):
            args, kwargs, target = next(stream)
            loss = reconstruction_loss(_output(unit, args, kwargs), target)
            progress = (step / iterations - WARMUP) / (1 - WARMUP)
            if progress >= 0:
                beta = BETA_END + (BETA_START - BETA_END) * (1 - progress)
                loss = loss + config.rounding_weight * rounding_regulariser(unit, beta)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        _set_soft_rounding(unit, False)
    # Every activation step size of the unit: layer inputs (input_quant) and, with attention_matmuls, the matmuls'.
    step_sizes = [p for n, p in unit.named_parameters() if is_step_size(n)]
    if step_sizes and config.activation_iterations:
        weights = [p for n, p in unit.named_parameters() if p not in set(step_sizes)]
        for p in weights:
            p.requires_grad_(False)
        optimizer = torch.optim.Adam(step_sizes, lr=STEP_SIZE_LR)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.activation_iterations)
        for _ in range(config.activation_iterations):
            args, kwargs, target = next(stream)
            loss = reconstruction_loss(_output(unit, args, kwargs), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        for p in weights:
            p.requires_grad_(True)
    return {"error_before": before, "error_after": _unit_error(unit, inputs, targets)}


def reconstruct(float_unet: nn.Module, model: nn.Module, calibration: CalibrationSet, config: QuantConfig,
                progress: bool = False) -> dict:
    """Reconstruct every unit of the quantized `model` in turn against `float_unet`; returns per-unit errors."""
    device = next(model.parameters()).device
    batches = [(x.to(device), t.to(device)) for x, t in calibration.batches(config.batch_size)]
    generator = torch.Generator().manual_seed(config.seed + 3)
    report, start = {}, time.perf_counter()
    units = reconstruction_units(model)
    # A split conv_shortcut lies inside its resnet block, so the float model has every unit under its name.
    all_targets = capture(float_unet, units, batches)
    for name in tqdm(units, desc="reconstruction", disable=not progress):
        inputs = _capture_inputs(model, name, batches)
        report[name] = reconstruct_unit(model.get_submodule(name), inputs, all_targets.pop(name), config, generator)
    report["seconds"] = time.perf_counter() - start
    return report
