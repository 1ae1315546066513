"""Settings of the media package (a plain frozen dataclass; the web layer maps BROADCAST_* onto it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MediaConfig:
    """Every knob of intake, processing, TTS and composition, with production defaults."""

    # Loudness target: EBU R128 integrated loudness of every stored clip, in LUFS.
    target_lufs: float = -16.0
    # True-peak ceiling of every stored clip (measured on the encoded file), in dBTP.
    true_peak_dbtp: float = -1.5
    # High-pass corner (4th-order Butterworth, -3 dB here): removes rumble, wind and handling noise
    # that outdoor horns cannot reproduce anyway and that would eat amplifier headroom.
    highpass_hz: float = 150.0
    # Output sample rate. 24 kHz keeps the whole speech band (to 12 kHz, far beyond what horn
    # speakers reproduce), is native to both MP3 (MPEG-2 layer III) and Opus, spends the 64 kbit/s
    # on the band that matters instead of 15-20 kHz content, and halves the processing cost of 48 kHz.
    sample_rate: int = 24000
    # Encoded output format: "mp3" (MPEG audio, plays everywhere) or "opus" (Ogg Opus, better at low rates).
    output_format: str = "mp3"
    # LAME algorithm quality 0 (best, slowest) .. 9 (fastest); 7 is transparent enough for speech at
    # 64 kbit/s and much faster than the default, which keeps the chain above 100x real time.
    mp3_quality: int = 7
    # Encoder bitrate in kbit/s (constant bitrate for MP3, target bitrate for Opus).
    bitrate_kbps: int = 64
    # Largest accepted upload in bytes, enforced while the upload streams in.
    max_upload_bytes: int = 50 * 1024 * 1024
    # Longest accepted decoded input, in seconds (also enforced while decoding).
    max_duration_s: float = 1800.0
    # Shortest accepted sound (first to last sounding 10 ms, before padding), in seconds.
    min_duration_s: float = 0.5
    # Longest accepted text for TTS, in characters (before normalization).
    max_text_chars: int = 2000
    # TTS fallback chain: engine names tried in order; the first that speaks wins.
    tts_engines: tuple[str, ...] = ("edge", "espeak")
    # Default voice of the edge engine (Microsoft neural, zh-CN).
    edge_voice: str = "zh-CN-XiaoxiaoNeural"
    # Edge engine: seconds to connect and to receive the first audio (and the longest stall after it).
    edge_connect_timeout_s: float = 3.0
    # Edge engine: deadline for the whole synthesis of one text, in seconds.
    edge_total_timeout_s: float = 15.0
    # Default voice of the offline espeak-ng engine ("cmn" = Mandarin).
    espeak_voice: str = "cmn"
    # Speaking rate of espeak-ng at rate 1.0, in words per minute (slower than its 175 default: horns).
    espeak_wpm: int = 150
    # Path to a piper .onnx voice; the piper engine is enabled only when this is set.
    piper_model: str | None = None
    # Piper executable (name on PATH or a path); when absent the piper Python module is tried.
    piper_exe: str = "piper"
    # Any engine that produces no audio within this many seconds is abandoned (fail-over deadline).
    tts_first_audio_timeout_s: float = 3.0
    # Deadline for one synthesis by an offline engine (espeak, piper), in seconds.
    tts_total_timeout_s: float = 120.0
    # Longest piece of text handed to an engine at once; longer text is split at sentence boundaries.
    tts_chunk_chars: int = 200
    # Length of the warning attention tone (853 Hz + 960 Hz dual tone), in seconds.
    attention_tone_s: float = 2.0
    # Loudness of chimes relative to the speech, in LU (a chime should announce, not startle).
    chime_level_lu: float = -3.0
    # Loudness of the attention tone relative to the speech, in LU.
    tone_level_lu: float = 0.0
    # Input whose loudest 400 ms (momentary loudness) stays below this is rejected as silent, in LUFS.
    silence_lufs: float = -50.0
    # Leading/trailing audio quieter than (loudest momentary - this many dB) is trimmed as silence.
    trim_depth_db: float = 40.0
    # Context kept before the first and after the last sound when trimming, in seconds.
    trim_pad_s: float = 0.15
    # Input with more than this fraction of its sounding samples near full scale gets media.clipped_input.
    clip_warn_fraction: float = 0.01
    # Accepted distance between the measured output loudness and the target, in LU.
    loudness_tolerance_lu: float = 0.5
    # Largest gain the normalizer applies, in dB (beyond it the input is noise, not quiet speech).
    max_gain_db: float = 45.0

    def __post_init__(self) -> None:
        if self.output_format not in ("mp3", "opus"):
            raise ValueError(f"output_format must be 'mp3' or 'opus', not {self.output_format!r}")
        if self.output_format == "opus" and self.sample_rate not in (8000, 12000, 16000, 24000, 48000):
            raise ValueError("opus needs a sample_rate of 8000, 12000, 16000, 24000 or 48000")
        if self.sample_rate < 8000:
            raise ValueError("sample_rate must be at least 8000")
        if self.true_peak_dbtp > 0:
            raise ValueError("true_peak_dbtp must be at or below 0 dBTP")
        if not 1.0 <= self.attention_tone_s <= 25.0:
            raise ValueError("attention_tone_s must be between 1 and 25 seconds")


@dataclass(frozen=True)
class Wrap:
    """How a clip is wrapped: chimes, spoken repeats with gaps, and the warning attention tone."""

    # Attention chime before the first spoken repeat.
    chime_before: bool = False
    # How many times the speech is spoken (1-10).
    repeat: int = 1
    # Silence between elements (tone, chimes and repeats), in seconds.
    gap_s: float = 2.0
    # End chime after the last spoken repeat.
    chime_after: bool = False
    # Warning dual tone (attention_tone_s long) before the speech.
    attention_tone: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.repeat <= 10:
            raise ValueError("repeat must be between 1 and 10")
        if not 0.0 <= self.gap_s <= 30.0:
            raise ValueError("gap_s must be between 0 and 30 seconds")

    @property
    def is_plain(self) -> bool:
        """True when the wrap adds nothing to the speech."""
        return not (self.chime_before or self.chime_after or self.attention_tone) and self.repeat == 1
