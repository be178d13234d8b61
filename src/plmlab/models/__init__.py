"""The three skeletons (decoder, encoder, encoder-decoder), built from one Config."""

from .base import ModelOutput, PretrainedModel
from .decoder import DecoderModel
from .encoder import EncoderModel
from .encoder_decoder import EncoderDecoderModel

SKELETONS = {"decoder": DecoderModel, "encoder": EncoderModel, "encoder-decoder": EncoderDecoderModel}

__all__ = ["ModelOutput", "PretrainedModel", "DecoderModel", "EncoderModel", "EncoderDecoderModel", "SKELETONS"]
