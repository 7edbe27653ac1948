"""Quantized attention matmuls (an option; Q-Diffusion quantizes them): the inputs of QKᵀ (queries and keys) and
of AV (the softmax probabilities and the values) each get a per-tensor activation quantizer of the method.

The projections to_q, to_k, to_v and to_out are Linear layers and are quantized with every other layer; this
module adds the two matmuls between them. It is a diffusers attention processor (`Attention.set_processor`): the
attention written out, softmax(Q Kᵀ · scale + mask) V, which equals diffusers' `AttnProcessor2_0` (scaled dot-product
attention) in float, with the four quantizers as submodules, so brevitas calibrates, saves and loads them with the
rest of the model.
"""

from __future__ import annotations

import torch
from brevitas.nn import QuantIdentity
from diffusers.models.attention_processor import Attention
from torch import nn

from .config import QuantConfig
from .quantizers import activation_quantizer, probability_quantizer


class QuantAttnProcessor(nn.Module):
    """Self- or cross-attention of a diffusers `Attention` with quantized matmul inputs (query, key, probs, value)."""

    def __init__(self, config: QuantConfig | None = None):
        super().__init__()
        if config is None:  # float: the written-out attention, to compare with diffusers' own
            self.query_quant = self.key_quant = self.value_quant = self.probs_quant = nn.Identity()
            return
        bits, candidates, norm = config.activation_bits, config.mse_candidates, config.search_norm
        act = activation_quantizer(config.method, bits, candidates, norm)
        self.query_quant = QuantIdentity(act_quant=act, return_quant_tensor=False)
        self.key_quant = QuantIdentity(act_quant=act, return_quant_tensor=False)
        self.value_quant = QuantIdentity(act_quant=act, return_quant_tensor=False)
        self.probs_quant = QuantIdentity(
            act_quant=probability_quantizer(config.method, bits, candidates, norm), return_quant_tensor=False
        )

    def forward(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None,
                temb=None, *args, **kwargs) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:  # (B, C, H, W) → (B, H·W, C)
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        batch_size, sequence_length, _ = context.shape
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        elif encoder_hidden_states is None:
            context = hidden_states

        query, key, value = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
        heads = attn.heads
        head_dim = key.shape[-1] // heads
        query, key, value = (x.view(batch_size, -1, heads, head_dim).transpose(1, 2) for x in (query, key, value))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        # The two matmuls, each on quantized inputs; (B, heads, L_q, L_k) scores, scale 1/√head_dim as SDPA's.
        scores = self.query_quant(query) @ self.key_quant(key).transpose(-1, -2) * head_dim**-0.5
        if attention_mask is not None:
            scores = scores + attention_mask
        probs = scores.softmax(dim=-1)
        hidden_states = self.probs_quant(probs) @ self.value_quant(value)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, heads * head_dim).to(query.dtype)

        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))  # projection, dropout
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def quantize_attention(model: nn.Module, config: QuantConfig) -> list[str]:
    """Give every diffusers Attention of `model` a QuantAttnProcessor (in place); returns their names."""
    names = []
    for name, module in model.named_modules():
        if isinstance(module, Attention):
            module.set_processor(QuantAttnProcessor(config))
            names.append(name)
    return names
