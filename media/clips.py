"""The public operations: upload or text in, one normalized, measured, stored clip out."""

from __future__ import annotations

import hashlib
import json
import logging
import unicodedata
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np

from . import errors
from .analyze import Prepared, analyze
from .config import MediaConfig, Wrap
from .intake import analyze_samples, analyze_upload, open_upload
from .render import Rendered, Segment, render, silence, whole
from .store import MediaStore
from .text import normalize_text, split_sentences
from .tones import attention_tone_samples, chime_samples
from .tts import ENGINES, Voice, speak

logger = logging.getLogger(__name__)

# Bump when the chain or the text normalization changes what a text sounds like: old tts_keys
# then stop matching and the same text is synthesized afresh.
PIPELINE_VERSION = 1
_MIME = {"mp3": "audio/mpeg", "opus": "audio/ogg"}


@dataclass(frozen=True)
class ClipInfo:
    """Everything known about one stored clip."""

    sha256: str  # hex of the stored (encoded) file bytes; also its storage name
    format: str  # "mp3" | "opus"
    mime: str  # "audio/mpeg" | "audio/ogg"
    size_bytes: int
    duration_ms: int
    loudness_lufs: float  # measured integrated loudness of the OUTPUT file
    true_peak_dbtp: float  # measured true peak of the output
    loudness_range_lu: float
    source: str  # "tts", "upload" or "generated" (tones, chimes)
    source_format: str | None  # detected input format for uploads
    engine: str | None  # TTS engine that actually spoke
    voice: str | None
    spoken_text: str | None  # the normalized text actually spoken
    waveform: list[float]  # ~200 peak values 0..1 for display
    warnings: list[str]  # e.g. ["media.clipped_input"]
    gain_db: float = 0.0  # overall gain the normalizer applied
    input_loudness_lufs: float | None = None  # loudness of the (trimmed) input before normalization
    tts_first_audio_ms: int | None = None  # TTS: time until the engine produced its first audio
    tts_attempts: list[dict[str, object]] = field(default_factory=list)  # engines that failed first

    def to_dict(self) -> dict[str, object]:
        """A JSON-safe dict of every field."""
        return asdict(self)


def _finish(parts: list[Segment], store: MediaStore, config: MediaConfig, work: Path, **facts: object) -> ClipInfo:
    total_s = sum(p.units for p in parts) / 100
    if total_s > config.max_duration_s:
        raise errors.too_long(config.max_duration_s)
    out = work / f"out.{config.output_format}"
    rendered: Rendered = render(parts, config, out)
    sha = store.put_file(out)
    m = rendered.measured
    warnings = [*facts.pop("warnings", []), *rendered.warnings]  # type: ignore[misc]
    return ClipInfo(
        sha256=sha,
        format=config.output_format,
        mime=_MIME[config.output_format],
        size_bytes=out.stat().st_size,
        duration_ms=round(m.duration_s * 1000),
        loudness_lufs=m.integrated,
        true_peak_dbtp=m.true_peak,
        loudness_range_lu=m.lra,
        waveform=rendered.waveform,
        warnings=warnings,
        gain_db=round(rendered.gain_db, 2),
        **facts,  # type: ignore[arg-type]
    )


def _wrapped(speech: Prepared, wrap: Wrap | None, config: MediaConfig, work: Path) -> list[Segment]:
    """The speech, its repeats and the tones around it, each at its loudness relative to the speech."""
    body = whole(speech)
    if wrap is None or wrap.is_plain:
        return [body]
    sr = config.sample_rate
    ref = speech.loudness
    parts: list[Segment] = []

    def add(seg: Segment) -> None:
        if parts:
            parts.append(silence(wrap.gap_s))
        parts.append(seg)

    if wrap.attention_tone:
        tone = analyze_samples(attention_tone_samples(sr, config.attention_tone_s), sr, work, "tone", config)
        add(whole(tone, ref + config.tone_level_lu - tone.loudness))
    if wrap.chime_before:
        start = analyze_samples(chime_samples(sr, "start"), sr, work, "chime-start", config)
        add(whole(start, ref + config.chime_level_lu - start.loudness))
    for _ in range(wrap.repeat):
        add(body)
    if wrap.chime_after:
        end = analyze_samples(chime_samples(sr, "end"), sr, work, "chime-end", config)
        add(whole(end, ref + config.chime_level_lu - end.loudness))
    return parts


def ingest_upload(
    src: BinaryIO | Path, store: MediaStore, config: MediaConfig, *, wrap: Wrap | None = None
) -> ClipInfo:
    """Check, normalize, encode and store an uploaded recording; nothing is stored when it raises.

    Raises MediaError: media.empty, media.too_large, media.not_audio, media.corrupt, media.too_long,
    media.too_short, media.silent.
    """
    with store.workdir() as work:
        path, fmt = open_upload(src, work, config)
        prepared = analyze_upload(path, fmt, work, config)
        warnings = []
        if prepared.clipped_fraction > config.clip_warn_fraction:
            warnings.append("media.clipped_input")
        return _finish(
            _wrapped(prepared, wrap, config, work),
            store,
            config,
            work,
            source="upload",
            source_format=fmt,
            engine=None,
            voice=None,
            spoken_text=None,
            warnings=warnings,
            input_loudness_lufs=round(prepared.loudness, 2),
        )


def _clean_text(text: str) -> str:
    return unicodedata.normalize("NFC", text or "").strip()


def _clamp_rate(rate: float) -> float:
    """The speaking rate limited to what the engines accept (0.5 to 2.0)."""
    return min(2.0, max(0.5, float(rate)))


def synthesize_text(
    text: str,
    store: MediaStore,
    config: MediaConfig,
    *,
    voice: str | None = None,
    rate: float = 1.0,
    wrap: Wrap | None = None,
) -> ClipInfo:
    """Speak TEXT (normalized for Mandarin) with the TTS chain, then normalize, encode and store it.

    VOICE is "engine:id" (or a bare voice id); that engine is tried first, then the configured chain.
    Raises MediaError: media.text_empty, media.text_too_long, media.tts_failed (and the checks of
    ingest_upload on the synthesized audio).
    """
    raw = _clean_text(text)
    if len(raw) > config.max_text_chars:
        raise errors.text_too_long(len(raw), config.max_text_chars)
    spoken = normalize_text(raw)
    if not any(ch.isalnum() for ch in spoken):
        raise errors.text_empty()
    rate = _clamp_rate(rate)
    chunks = split_sentences(spoken, config.tts_chunk_chars)
    with store.workdir() as work:
        result = speak(chunks, config, work, voice=voice, rate=rate)
        prepared = analyze(result.output.input_args, work / "speech.f32", config)
        return _finish(
            _wrapped(prepared, wrap, config, work),
            store,
            config,
            work,
            source="tts",
            source_format=None,
            engine=result.engine,
            voice=result.voice,
            spoken_text=spoken,
            input_loudness_lufs=round(prepared.loudness, 2),
            tts_first_audio_ms=round(result.first_audio_s * 1000),
            tts_attempts=result.attempts,
        )


def tts_key(text: str, voice: str | None, rate: float, wrap: Wrap | None, config: MediaConfig) -> str:
    """Stable hex key of "this text, voice and options under these settings" (to reuse a clip)."""
    wrapped = wrap is not None and not wrap.is_plain
    payload = {
        "v": PIPELINE_VERSION,
        "text": " ".join(_clean_text(text).split()),
        "voice": voice or "",
        "rate": round(_clamp_rate(rate), 2),
        "wrap": asdict(wrap) if wrapped else None,
        "out": [
            config.target_lufs,
            config.true_peak_dbtp,
            config.highpass_hz,
            config.sample_rate,
            config.output_format,
            config.bitrate_kbps,
        ],
        "tts": [
            list(config.tts_engines),
            config.edge_voice,
            config.espeak_voice,
            config.espeak_wpm,
            config.piper_model,
        ],
        "tones": [config.attention_tone_s, config.chime_level_lu, config.tone_level_lu] if wrapped else None,
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def list_voices(config: MediaConfig) -> list[Voice]:
    """Voices of every enabled engine in the configured chain, in chain order."""
    voices: list[Voice] = []
    for name in config.tts_engines:
        engine = ENGINES.get(name)
        if engine is not None and engine.enabled(config):
            voices.extend(engine.voices(config))
    return voices


def _generated(
    samples_name: str, samples: np.ndarray, store: MediaStore, config: MediaConfig, level_lu: float
) -> ClipInfo:
    cfg = config
    with store.workdir() as work:
        prepared = analyze_samples(samples, cfg.sample_rate, work, samples_name, cfg)
        # a stand-alone tone is normalized to the target plus its level offset, like it sounds in a wrap
        tone_cfg = replace(cfg, target_lufs=cfg.target_lufs + level_lu)
        return _finish(
            [whole(prepared)],
            store,
            tone_cfg,
            work,
            source="generated",
            source_format=None,
            engine=None,
            voice=samples_name,
            spoken_text=None,
            input_loudness_lufs=round(prepared.loudness, 2),
        )


def attention_tone(store: MediaStore, config: MediaConfig) -> ClipInfo:
    """The warning attention tone (853 + 960 Hz, attention_tone_s long), normalized and stored."""
    samples = attention_tone_samples(config.sample_rate, config.attention_tone_s)
    return _generated("attention-tone", samples, store, config, config.tone_level_lu)


def chime(store: MediaStore, config: MediaConfig, which: str = "start") -> ClipInfo:
    """The start or end chime, normalized and stored."""
    samples = chime_samples(config.sample_rate, which)
    return _generated(f"chime-{which}", samples, store, config, config.chime_level_lu)
