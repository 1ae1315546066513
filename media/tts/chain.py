"""The fallback chain: try each configured engine under deadlines; the first that speaks wins."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .. import errors
from ..config import MediaConfig
from ..errors import MediaError
from .base import ENGINES, SynthJob, SynthOutput, TtsEngine

logger = logging.getLogger(__name__)

_POLL_S = 0.05


@dataclass(frozen=True)
class Spoken:
    """Result of the chain: the audio file and who spoke it."""

    output: SynthOutput
    engine: str
    voice: str
    first_audio_s: float  # from the start of the successful engine's attempt
    attempts: list[dict[str, object]]  # one entry per engine tried before it (failures)


def split_voice(voice: str | None) -> tuple[str | None, str | None]:
    """ "edge:zh-CN-YunxiNeural" -> ("edge", "zh-CN-YunxiNeural"); a bare id -> (None, id)."""
    if not voice:
        return None, None
    engine, sep, vid = voice.partition(":")
    if sep and engine in ENGINES:
        return engine, vid or None
    return None, voice


def engine_order(config: MediaConfig, voice: str | None) -> list[tuple[str, str | None]]:
    """(engine, voice id or None for its default) in the order they are tried."""
    wanted_engine, wanted_voice = split_voice(voice)
    if wanted_engine is None and wanted_voice is not None:
        for name in config.tts_engines:
            engine = ENGINES.get(name)
            if engine and any(v.id == wanted_voice for v in engine.voices(config)):
                wanted_engine = name
                break
    order: list[tuple[str, str | None]] = []
    if wanted_engine is not None:
        order.append((wanted_engine, wanted_voice))
    order.extend((name, None) for name in config.tts_engines if name != wanted_engine)
    return order


def _attempt(engine: TtsEngine, job: SynthJob) -> SynthOutput:
    """Run one engine in a worker thread and watch it: no audio in time, or too slow, means give up."""
    result: dict[str, object] = {}
    done = threading.Event()

    def work() -> None:
        try:
            result["output"] = engine.synthesize(job)
        except BaseException as exc:
            result["error"] = exc
        finally:
            done.set()

    worker = threading.Thread(target=work, name=f"tts-{engine.name}", daemon=True)
    worker.start()
    first_deadline = engine.first_audio_timeout(job.config)
    total_deadline = engine.total_timeout(job.config)
    while not done.wait(_POLL_S):
        now = time.monotonic()
        last = job.last_audio_at or job.started_at
        if now - last > first_deadline or now - job.started_at > total_deadline:
            job.cancel.set()
            done.wait(0.5)  # a cooperative engine stops now; a stuck one is left behind (daemon)
            what = "no audio" if job.first_audio_at is None else "stalled or too slow"
            raise MediaError(
                "media.tts_timeout",
                "语音合成超时。",
                "Speech synthesis timed out.",
                kind="unavailable",
                engine=engine.name,
                reason=what,
                waited_s=round(now - job.started_at, 2),
            )
    worker.join()
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result["output"]  # type: ignore[return-value]


def speak(chunks: list[str], config: MediaConfig, work: Path, *, voice: str | None, rate: float) -> Spoken:
    """Synthesize CHUNKS with the first engine of the chain that succeeds; raise tts_failed if none."""
    attempts: list[dict[str, object]] = []
    for name, voice_id in engine_order(config, voice):
        engine = ENGINES.get(name)
        if engine is None or not engine.enabled(config):
            attempts.append({"engine": name, "error": "media.tts_unavailable", "reason": "not enabled"})
            continue
        vid = voice_id or engine.default_voice(config)
        out_dir = work / f"tts-{name}"
        out_dir.mkdir(exist_ok=True)
        job = SynthJob(chunks=chunks, voice=vid, rate=rate, out_dir=out_dir, config=config)
        try:
            output = _attempt(engine, job)
        except MediaError as exc:
            logger.warning("TTS engine %s failed (%s): %s", name, exc.code, exc.details.get("reason", exc))
            attempts.append({"engine": name, "error": exc.code, "reason": str(exc.details.get("reason", exc))})
            continue
        except Exception as exc:
            logger.exception("TTS engine %s crashed", name)
            attempts.append({"engine": name, "error": "media.tts_engine", "reason": f"{type(exc).__name__}: {exc}"})
            continue
        ended = time.monotonic()
        first = (job.first_audio_at or ended) - job.started_at
        return Spoken(
            output=output,
            engine=name,
            voice=vid,
            first_audio_s=first,
            attempts=attempts,
        )
    raise errors.tts_failed(attempts)
