"""Offline Mandarin TTS: espeak-ng through ctypes on the library shipped by espeakng-loader."""

from __future__ import annotations

import ctypes
import logging
import threading
import wave
from pathlib import Path

from ..config import MediaConfig
from ..errors import MediaError
from .base import SynthJob, SynthOutput, TtsEngine, Voice, register

logger = logging.getLogger(__name__)

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_RATE = 1
_ESPEAK_CHARS_UTF8 = 1
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

# libespeak-ng keeps global state (voice, rate, callback): one synthesis at a time per process.
_LOCK = threading.Lock()
_state: dict[str, object] = {}


class _Sink:
    """Where the current synthesis writes; swapped under _LOCK."""

    def __init__(self, wav: wave.Wave_write, job: SynthJob) -> None:
        self.wav = wav
        self.job = job


_current: list[_Sink] = []


def _on_audio(samples: ctypes._Pointer, count: int, _events: int) -> int:  # type: ignore[type-arg]
    sink = _current[0] if _current else None
    if sink is None:
        return 1
    if count > 0:
        sink.wav.writeframes(ctypes.string_at(samples, count * 2))
        sink.job.progress()
    return 1 if sink.job.cancel.is_set() else 0  # 1 asks espeak to stop


_callback = _CALLBACK(_on_audio)


def _library() -> tuple[ctypes.CDLL, int]:
    """Load and initialise libespeak-ng once (under _LOCK)."""
    if "lib" not in _state:
        try:
            import espeakng_loader

            lib = ctypes.CDLL(espeakng_loader.get_library_path())
            data = espeakng_loader.get_data_path().encode()
        except (ImportError, OSError, RuntimeError) as exc:
            raise MediaError(
                "media.tts_unavailable",
                "离线语音合成库不可用。",
                "The offline TTS library is not available.",
                kind="unavailable",
                engine="espeak",
            ) from exc
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if rate <= 0:
            raise MediaError(
                "media.tts_unavailable",
                "离线语音合成库初始化失败。",
                "The offline TTS library failed to initialise.",
                kind="unavailable",
                engine="espeak",
            )
        lib.espeak_SetSynthCallback(_callback)
        _state["lib"] = lib
        _state["rate"] = rate
    return _state["lib"], int(_state["rate"])  # type: ignore[return-value]


class EspeakEngine(TtsEngine):
    """espeak-ng, offline, always available: robotic but intelligible Mandarin."""

    name = "espeak"
    label_zh = "离线合成（espeak-ng）"

    def voices(self, config: MediaConfig) -> list[Voice]:
        """The Mandarin voice (plus the configured one if different)."""
        voices = [Voice("espeak", "cmn", "普通话（离线）")]
        if config.espeak_voice != "cmn":
            voices.append(Voice("espeak", config.espeak_voice, f"{config.espeak_voice}（离线）"))
        return voices

    def default_voice(self, config: MediaConfig) -> str:
        """config.espeak_voice."""
        return config.espeak_voice

    def synthesize(self, job: SynthJob) -> SynthOutput:
        """Speak every chunk into one 16-bit mono WAV at espeak's native rate."""
        out = job.out_dir / "espeak.wav"
        wpm = max(80, min(450, round(job.config.espeak_wpm * job.rate)))
        with _LOCK:
            lib, rate = _library()
            if lib.espeak_SetVoiceByName(job.voice.encode()) != 0:
                raise MediaError(
                    "media.tts_voice",
                    "离线合成不支持该音色。",
                    "The offline engine has no such voice.",
                    engine=self.name,
                    voice=job.voice,
                )
            lib.espeak_SetParameter(_ESPEAK_RATE, wpm, 0)
            with wave.open(str(out), "wb") as wav:
                wav.setnchannels(1)
                wav.setsampwidth(2)
                wav.setframerate(rate)
                _current.append(_Sink(wav, job))
                try:
                    for chunk in job.chunks:
                        if job.cancel.is_set():
                            break
                        text = chunk.encode("utf-8")
                        status = lib.espeak_Synth(text, len(text) + 1, 0, 0, 0, _ESPEAK_CHARS_UTF8, None, None)
                        if status != 0 and not job.cancel.is_set():
                            raise MediaError(
                                "media.tts_engine",
                                "离线合成出错。",
                                "The offline engine failed.",
                                kind="unavailable",
                                engine=self.name,
                                status=status,
                            )
                finally:
                    _current.clear()
        if job.cancel.is_set():
            raise MediaError("media.tts_cancelled", "合成已取消。", "Synthesis was cancelled.", engine=self.name)
        logger.debug("espeak spoke %d pieces at %d wpm into %s", len(job.chunks), wpm, out.name)
        return SynthOutput(out, ["-f", "wav", "-i", str(Path(out))])


register(EspeakEngine())
