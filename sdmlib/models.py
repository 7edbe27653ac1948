"""The denoiser: diffusers' UNet2DModel, unchanged (the paper keeps the architecture as it is)."""

from __future__ import annotations

from diffusers import UNet2DModel

# name -> (block_out_channels, layers_per_block, down_block_types, up_block_types)
ARCHITECTURES = {
    # The authors' CIFAR-10 network (≈ 114M parameters at 32×32).
    "paper": (
        (128, 256, 512, 512),
        2,
        ("DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        ("AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
    ),
    # Same shape, a sixteenth of the width squared: for short CPU runs.
    "small": (
        (32, 64, 128, 128),
        1,
        ("DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        ("AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
    ),
    # The offline demo's network: trains a few hundred steps on two CPU cores in minutes.
    "tiny": (
        (32, 64, 64),
        1,
        ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        ("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    ),
}


def build_unet(model_size: str, image_size: int, channels: int = 3) -> UNet2DModel:
    """A UNet2DModel predicting noise of the same shape as its input: (B, channels, image_size, image_size)."""
    if model_size not in ARCHITECTURES:
        raise ValueError(f"model_size must be one of {tuple(ARCHITECTURES)}, got {model_size!r}")
    block_out_channels, layers_per_block, down, up = ARCHITECTURES[model_size]
    downsamplings = len(block_out_channels) - 1
    if image_size % (2**downsamplings):
        raise ValueError(
            f"image_size must be divisible by {2**downsamplings} for model_size={model_size!r}, got {image_size}"
        )
    return UNet2DModel(
        sample_size=image_size,
        in_channels=channels,
        out_channels=channels,
        layers_per_block=layers_per_block,
        block_out_channels=block_out_channels,
        down_block_types=down,
        up_block_types=up,
        norm_num_groups=min(32, block_out_channels[0]),
    )


def build_jit(model_size: str, image_size: int, patch_size: int = 4, bottleneck_dim: int = 0, channels: int = 3):
    """The JiT-style transformer (`sdmlib.jit`) at one of `JIT_SIZES`, with JiT's optional low-rank patch embedding."""
    from .jit import JIT_SIZES, JiTDenoiser

    if model_size not in JIT_SIZES:
        raise ValueError(f"model_size must be one of {tuple(JIT_SIZES)}, got {model_size!r}")
    width, depth, heads = JIT_SIZES[model_size]
    return JiTDenoiser(
        sample_size=image_size,
        in_channels=channels,
        patch_size=patch_size,
        width=width,
        depth=depth,
        num_heads=heads,
        bottleneck_dim=bottleneck_dim,
    )
