"""village-broadcast media: intake, TTS, Chinese text normalization, loudness processing, storage.

Never imports Flask or the broadcast package; the web layer calls the functions exported here.
"""

from .clips import (
    PIPELINE_VERSION,
    ClipInfo,
    attention_tone,
    chime,
    ingest_upload,
    list_voices,
    synthesize_text,
    tts_key,
)
from .config import MediaConfig, Wrap
from .errors import MediaError
from .measure import Loudness, measure_loudness
from .runner import ffmpeg_exe
from .sniff import detect_format
from .store import MediaStore
from .text import normalize_text, split_sentences
from .tts import Voice

__all__ = [
    "PIPELINE_VERSION",
    "ClipInfo",
    "Loudness",
    "MediaConfig",
    "MediaError",
    "MediaStore",
    "Voice",
    "Wrap",
    "attention_tone",
    "chime",
    "detect_format",
    "ffmpeg_exe",
    "ingest_upload",
    "list_voices",
    "measure_loudness",
    "normalize_text",
    "split_sentences",
    "synthesize_text",
    "tts_key",
]
