"""A JiT-style denoiser: a plain transformer on image patches with time conditioning (`docs/prediction_targets.md`).

JiT ("Just image Transformers") is a ViT on raw pixels: patchify, a stack of adaLN-conditioned transformer blocks,
a linear head that unpatchifies, no latent space and no UNet. Its bottleneck ablation replaces the linear patch
embedding (patch dimension p²·C → width) by a low-rank one (p²·C → d′ → width); with d′ below the patch dimension the
network cannot carry a full-dimensional output through its input layer, which is where only x-prediction trains.

Reused from diffusers (nothing here re-implements them): `PatchEmbed` (the patchifying convolution and the fixed 2-D
sin-cos position embedding), `AdaLayerNormSingle` (the timestep embedding and its adaLN modulation, PixArt-α's
"adaLN-single"), `BasicTransformerBlock` with `norm_type="ada_norm_single"` (self-attention + MLP, each modulated by
the time embedding). Written here: the low-rank patch embedding, the modulated output layer and the unpatchify, in
the same way as diffusers' `PixArtTransformer2DModel` (which needs text conditioning, so it is not used as is), and
the interface of `UNet2DModel` (`model(x_t, t).sample`, `config.sample_size`, `config.in_channels`), so the training
loop and `SqueezedDDPMPipeline` take either model.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.embeddings import PatchEmbed, get_2d_sincos_pos_embed
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401  (also what diffusers' loader looks for here)
from diffusers.models.normalization import AdaLayerNormSingle
from diffusers.models.unets.unet_2d import UNet2DOutput
from torch import nn

# name -> (width, depth, heads): JiT-B is (768, 12, 12); these are for the CPU.
JIT_SIZES = {
    "paper": (384, 12, 6),
    "small": (192, 6, 3),
    "tiny": (96, 4, 2),
}


def check_patching(image_size: int, patch_size: int, bottleneck_dim: int, channels: int = 3) -> None:
    """Clear errors for a patch size that does not tile the image and a bottleneck wider than a patch."""
    if patch_size < 1 or image_size % patch_size:
        raise ValueError(f"patch_size must be a positive divisor of image_size={image_size}, got {patch_size}")
    patch_dim = channels * patch_size**2
    if bottleneck_dim < 0 or bottleneck_dim > patch_dim:
        raise ValueError(
            f"bottleneck_dim must lie in [0, patch dimension {patch_dim} = {channels}·{patch_size}²] "
            f"(0 = no bottleneck), got {bottleneck_dim}"
        )


class LowRankPatchEmbed(nn.Module):
    """JiT's bottleneck: patch (p²·C) → d′ (diffusers' `PatchEmbed`, no position embedding) → width, then the 2-D
    sin-cos position embedding at the full width."""

    def __init__(self, sample_size: int, patch_size: int, in_channels: int, bottleneck_dim: int, width: int):
        super().__init__()
        self.patches = PatchEmbed(
            height=sample_size,
            width=sample_size,
            patch_size=patch_size,
            in_channels=in_channels,
            embed_dim=bottleneck_dim,
            pos_embed_type=None,
        )
        self.expand = nn.Linear(bottleneck_dim, width)
        position = get_2d_sincos_pos_embed(width, sample_size // patch_size, base_size=sample_size // patch_size)
        self.register_buffer("pos_embed", torch.as_tensor(position).float().unsqueeze(0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(self.patches(x)) + self.pos_embed.to(x.dtype)  # (B, N, width)


class JiTDenoiser(ModelMixin, ConfigMixin):
    """x_t (B, C, H, W), t (B,) or scalar → an output of x_t's shape (ε̂, x̂_0 or v̂: the training decides)."""

    @register_to_config
    def __init__(
        self,
        sample_size: int = 32,
        in_channels: int = 3,
        patch_size: int = 4,
        width: int = 96,
        depth: int = 4,
        num_heads: int = 2,
        bottleneck_dim: int = 0,
    ):
        super().__init__()
        check_patching(sample_size, patch_size, bottleneck_dim, in_channels)
        if width % num_heads:
            raise ValueError(f"width={width} must be divisible by num_heads={num_heads}")
        if bottleneck_dim:
            self.patch_embed = LowRankPatchEmbed(sample_size, patch_size, in_channels, bottleneck_dim, width)
        else:
            self.patch_embed = PatchEmbed(
                height=sample_size,
                width=sample_size,
                patch_size=patch_size,
                in_channels=in_channels,
                embed_dim=width,
            )
        self.time_embed = AdaLayerNormSingle(width)
        self.blocks = nn.ModuleList(
            BasicTransformerBlock(
                width,
                num_heads,
                width // num_heads,
                activation_fn="gelu-approximate",
                attention_bias=True,
                norm_type="ada_norm_single",
                norm_elementwise_affine=False,
                norm_eps=1e-6,
            )
            for _ in range(depth)
        )
        self.norm_out = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.scale_shift_table = nn.Parameter(torch.randn(2, width) / width**0.5)
        self.proj_out = nn.Linear(width, patch_size**2 * in_channels)
        nn.init.zeros_(self.proj_out.weight)  # DiT's zero-initialised head: the untrained model outputs 0
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | int, return_dict: bool = True):
        batch, channels, height, width = sample.shape
        p = self.config.patch_size
        timestep = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(batch)  # (B,)
        hidden = self.patch_embed(sample)  # (B, N, width), N = (H/p)(W/p)
        modulation, embedded_t = self.time_embed(timestep, batch_size=batch, hidden_dtype=hidden.dtype)
        for block in self.blocks:
            hidden = block(hidden, timestep=modulation)
        shift, scale = (self.scale_shift_table[None] + embedded_t[:, None]).chunk(2, dim=1)  # (B, 1, width) each
        hidden = self.proj_out(self.norm_out(hidden) * (1 + scale) + shift)  # (B, N, p²C)
        hidden = hidden.reshape(batch, height // p, width // p, p, p, channels)
        output = torch.einsum("nhwpqc->nchpwq", hidden).reshape(batch, channels, height, width)
        if not return_dict:
            return (output,)
        return UNet2DOutput(sample=output)
