"""Save and load a quantized UNet's quantizer state (scales, zero points, learned roundings) with safetensors.

The file holds only the quantizers' tensors, not the UNet's weights, which stay those of the run; with it comes a
JSON record of the setting, the shortcut splits and a fingerprint of the run's UNet, so that a state is never
loaded into a UNet it was not made for.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..io import save_json, save_safetensors
from .attention import QuantAttnProcessor
from .config import QuantConfig
from .model import quant_structure
from .quantizers import quant_layers

STATE_FILE = "quantizer.safetensors"
RECORD_FILE = "quantizer.json"


def unet_fingerprint(unet: torch.nn.Module) -> str:
    """A hash of the UNet's parameter names, shapes and values: a state fits only the UNet it was calibrated on."""
    digest = hashlib.sha256()
    for name, tensor in sorted(unet.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().float().numpy().tobytes())
    return digest.hexdigest()[:16]


def is_quantizer_key(name: str) -> bool:
    return "_quant." in name  # brevitas names its quantizers weight_quant, input_quant, ...


def quantizer_state(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The quantizer tensors of `model` by name, each stored once, and {alias: stored name} for the names that
    share a tensor (brevitas' learned rounding is one parameter reached from the weight and the zero-point
    quantizer; safetensors refuses to write shared tensors twice)."""
    state, aliases, seen = {}, {}, {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if not is_quantizer_key(name):
            continue
        key = (tensor.data_ptr(), tuple(tensor.shape), tuple(tensor.stride()))
        if tensor.numel() and key in seen:
            aliases[name] = seen[key]
        else:
            seen[key] = name
            state[name] = tensor.detach().cpu()
    return state, aliases


def save_quant_state(folder: Path, model: torch.nn.Module, unet: torch.nn.Module, config: QuantConfig,
                     splits: dict[str, int]) -> None:
    state, aliases = quantizer_state(model)
    save_safetensors(Path(folder) / STATE_FILE, state)
    save_json(Path(folder) / RECORD_FILE, {"config": config.to_dict(), "splits": splits, "aliases": aliases,
                                           "unet": unet_fingerprint(unet)})


def load_quant_state(folder: Path, unet: torch.nn.Module) -> tuple[torch.nn.Module, QuantConfig]:
    """The quantized model saved in `folder`, rebuilt on the run's float `unet` without recalibrating."""
    folder = Path(folder)
    if not (folder / STATE_FILE).exists() or not (folder / RECORD_FILE).exists():
        raise FileNotFoundError(f"{folder} holds no saved quantizer ({STATE_FILE} and {RECORD_FILE})")
    record = json.loads((folder / RECORD_FILE).read_text())
    fingerprint = unet_fingerprint(unet)
    if record["unet"] != fingerprint:
        raise ValueError(
            f"the quantizer saved in {folder} was made for UNet {record['unet']}, not for this run's UNet "
            f"{fingerprint}; quantize this run again instead of loading it"
        )
    config = QuantConfig.from_mapping(record["config"])
    model = quant_structure(unet, config, {k: int(v) for k, v in record["splits"].items()})
    state = load_file(folder / STATE_FILE)
    # Activation scales exist only once calibrated: brevitas creates them on loading, so compare layer by layer.
    layers = set(quant_layers(model)) | {n for n, m in model.named_modules() if isinstance(m, QuantAttnProcessor)}
    saved_layers = {re.split(r"\.\w+_quant\.", k)[0] for k in state}
    missing_keys, unexpected_keys = model.load_state_dict(state, strict=False)
    unexpected = sorted(set(unexpected_keys) | (saved_layers - layers))
    # A shared tensor is loaded once, under its stored name; its aliases are the same parameter.
    aliases = record.get("aliases", {})
    missing = sorted(k for k in missing_keys if is_quantizer_key(k) and k not in aliases)
    if unexpected or missing:
        raise ValueError(
            f"the quantizer state in {folder} does not match its UNet layout (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    return model.eval(), config
