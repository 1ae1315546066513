"""Online TTS: Microsoft Edge neural voices through edge-tts, with strict deadlines for fail-over."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import Any

from ..config import MediaConfig
from ..errors import MediaError
from .base import SynthJob, SynthOutput, TtsEngine, Voice, register

logger = logging.getLogger(__name__)

# zh-CN neural voices offered in the console (id, label)
_VOICES = (
    ("zh-CN-XiaoxiaoNeural", "晓晓（女声，温暖）"),
    ("zh-CN-XiaoyiNeural", "晓伊（女声，活泼）"),
    ("zh-CN-YunjianNeural", "云健（男声，有力）"),
    ("zh-CN-YunxiNeural", "云希（男声，阳光）"),
    ("zh-CN-YunyangNeural", "云扬（男声，新闻播报）"),
    ("zh-CN-YunxiaNeural", "云夏（男童声）"),
    ("zh-CN-liaoning-XiaobeiNeural", "晓北（东北话）"),
    ("zh-CN-shaanxi-XiaoniNeural", "晓妮（陕西话）"),
)


def rate_string(rate: float) -> str:
    """edge-tts speaking rate ("+10%") for a speed factor (1.1)."""
    return f"{round((rate - 1.0) * 100):+d}%"


async def _speak(job: SynthJob, out_path: Any) -> None:
    import edge_tts

    cfg = job.config
    loop = asyncio.get_running_loop()
    deadline = loop.time() + cfg.edge_total_timeout_s
    with open(out_path, "wb") as out:
        for text in job.chunks:
            comm = edge_tts.Communicate(
                text,
                job.voice,
                rate=rate_string(job.rate),
                # edge-tts wants whole seconds; the exact deadline is enforced by wait_for below
                connect_timeout=max(1, math.ceil(cfg.edge_connect_timeout_s)),
                receive_timeout=max(1, math.ceil(cfg.edge_connect_timeout_s)),
            )
            stream = comm.stream()
            try:
                while True:
                    if job.cancel.is_set():
                        raise TimeoutError("cancelled")
                    # no audio for edge_connect_timeout_s (connecting or stalled) means fail over
                    wait = min(cfg.edge_connect_timeout_s, deadline - loop.time())
                    if wait <= 0:
                        raise TimeoutError("edge total deadline")
                    try:
                        item = await asyncio.wait_for(anext(stream), wait)
                    except StopAsyncIteration:
                        break
                    if item.get("type") == "audio" and item.get("data"):
                        out.write(item["data"])
                        job.progress()
            finally:
                with contextlib.suppress(Exception):
                    await stream.aclose()


class EdgeEngine(TtsEngine):
    """Edge neural voices: natural Mandarin when the service answers within a short deadline."""

    name = "edge"
    label_zh = "在线神经网络合成（Edge）"
    online = True

    def voices(self, config: MediaConfig) -> list[Voice]:
        """The zh-CN voices (and the configured default if it is another)."""
        voices = [Voice("edge", vid, label, online=True) for vid, label in _VOICES]
        if config.edge_voice not in {v.id for v in voices}:
            voices.insert(0, Voice("edge", config.edge_voice, config.edge_voice, online=True))
        return voices

    def default_voice(self, config: MediaConfig) -> str:
        """config.edge_voice."""
        return config.edge_voice

    def first_audio_timeout(self, config: MediaConfig) -> float:
        """config.edge_connect_timeout_s (plus a little for the event loop to start)."""
        return config.edge_connect_timeout_s + 0.2

    def total_timeout(self, config: MediaConfig) -> float:
        """config.edge_total_timeout_s (plus a little slack)."""
        return config.edge_total_timeout_s + 0.5

    def synthesize(self, job: SynthJob) -> SynthOutput:
        """Stream the MP3 of every chunk into one file; any network trouble raises."""
        out = job.out_dir / "edge.mp3"
        try:
            asyncio.run(_speak(job, out))
        except MediaError:
            raise
        except Exception as exc:  # aiohttp, websocket, DNS, timeouts: all mean "fail over"
            raise MediaError(
                "media.tts_engine",
                "在线语音合成不可用。",
                "The online TTS service is unreachable.",
                kind="unavailable",
                engine=self.name,
                reason=f"{type(exc).__name__}: {exc}"[:300],
            ) from exc
        if not out.exists() or out.stat().st_size == 0:
            raise MediaError(
                "media.tts_engine",
                "在线语音合成没有返回音频。",
                "The online TTS service returned no audio.",
                kind="unavailable",
                engine=self.name,
            )
        return SynthOutput(out, ["-f", "mp3", "-i", str(out)])


register(EdgeEngine())
