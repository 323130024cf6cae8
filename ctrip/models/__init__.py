"""Transformer blocks, tokenizers, the generic masked autoencoder and the heads."""

from ctrip.models.heads import ProjectionHead, RegressionHead
from ctrip.models.mae import Encoder, MaskedAutoencoder, build_encoder, build_mae, random_masking
from ctrip.models.position import sincos_1d, sincos_2d
from ctrip.models.tokenizers import (
    ECGTokenizer,
    ImageTokenizer,
    TabularTokenizer,
    build_tokenizer,
    highpass,
)
from ctrip.models.transformer import Attention, Block

__all__ = [
    "Attention",
    "Block",
    "ECGTokenizer",
    "Encoder",
    "ImageTokenizer",
    "MaskedAutoencoder",
    "ProjectionHead",
    "RegressionHead",
    "TabularTokenizer",
    "build_encoder",
    "build_mae",
    "build_tokenizer",
    "highpass",
    "random_masking",
    "sincos_1d",
    "sincos_2d",
]
