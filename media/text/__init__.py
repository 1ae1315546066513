"""Chinese text normalization for speech and sentence splitting for TTS engines."""

from .normalize import normalize_text
from .numbers import cardinal, decimal, digits, number
from .split import split_sentences

__all__ = ["cardinal", "decimal", "digits", "normalize_text", "number", "split_sentences"]
