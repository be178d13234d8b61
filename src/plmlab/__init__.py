"""plmlab: build, pretrain, fine-tune, evaluate and run pretrained language models of all
three Transformer families from one small set of shared building blocks."""

from .config import Config
from .errors import PlmlabError
from .modeling import build_model, count_parameters
from .models import ModelOutput

__version__ = "0.1.0"


def load_pretrained(path, **kwargs):
    """A model in eval mode from a plmlab or Hugging Face checkpoint directory."""
    from .hf import load_pretrained as _load

    return _load(path, **kwargs)


def save_pretrained(model, path, **kwargs):
    """Write `path` so that `transformers` (or plmlab) loads the same model back."""
    from .hf import save_pretrained as _save

    return _save(model, path, **kwargs)


def generate(model, input_ids, **kwargs):
    """Decode a continuation (see plmlab.generation.generate for the options)."""
    from .generation import generate as _generate

    return _generate(model, input_ids, **kwargs)


def load_tokenizer(path):
    """A tokenizer from a directory written by plmlab or transformers (or a tokenizer.json)."""
    from .tokenizers import load_tokenizer as _load

    return _load(path)


def pipeline(task: str, model, tokenizer=None, device="cpu", **options):
    """Text in, text out for `task` ("text-generation", "fill-mask", "fill-blanks", "text2text",
    "text-classification", "token-classification"); see plmlab.pipelines."""
    from .pipelines import pipeline as _pipeline

    return _pipeline(task, model, tokenizer=tokenizer, device=device, **options)


__all__ = ["Config", "PlmlabError", "build_model", "count_parameters", "load_pretrained",
           "save_pretrained", "generate", "load_tokenizer", "pipeline", "ModelOutput", "__version__"]
