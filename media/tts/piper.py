"""Optional neural offline TTS: a piper voice model run by the piper executable or module."""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import subprocess
import sys
import wave
from pathlib import Path

from ..config import MediaConfig
from ..errors import MediaError
from .base import SynthJob, SynthOutput, TtsEngine, Voice, register

logger = logging.getLogger(__name__)


def piper_command(config: MediaConfig) -> list[str] | None:
    """How to start piper: the configured executable, else `python -m piper`, else None."""
    exe = shutil.which(config.piper_exe)
    if exe:
        return [exe]
    if importlib.util.find_spec("piper") is not None:
        return [sys.executable, "-m", "piper"]
    return None


def _sample_rate(model: Path) -> int:
    meta = Path(f"{model}.json")
    try:
        return int(json.loads(meta.read_text("utf-8"))["audio"]["sample_rate"])
    except (OSError, ValueError, KeyError, TypeError):
        return 22050


class PiperEngine(TtsEngine):
    """piper: enabled only when config.piper_model names an existing .onnx voice and piper runs."""

    name = "piper"
    label_zh = "离线神经网络合成（Piper）"

    def enabled(self, config: MediaConfig) -> bool:
        """A model file is configured and exists, and piper can be started."""
        return bool(config.piper_model) and Path(config.piper_model).is_file() and piper_command(config) is not None

    def voices(self, config: MediaConfig) -> list[Voice]:
        """The one configured model."""
        if not self.enabled(config):
            return []
        return [Voice("piper", self.default_voice(config), f"Piper：{self.default_voice(config)}")]

    def default_voice(self, config: MediaConfig) -> str:
        """The model file's stem."""
        return Path(config.piper_model or "piper").stem

    def first_audio_timeout(self, config: MediaConfig) -> float:
        """Loading an ONNX voice takes seconds, so piper gets longer than the network engines."""
        return max(config.tts_first_audio_timeout_s, 15.0)

    def synthesize(self, job: SynthJob) -> SynthOutput:
        """Pipe the chunks (one per line) through piper --output_raw into a WAV."""
        cfg = job.config
        cmd = piper_command(cfg)
        if not cfg.piper_model or cmd is None:
            raise MediaError("media.tts_unavailable", "未配置 Piper。", "piper is not configured.", kind="unavailable")
        model = Path(cfg.piper_model)
        out = job.out_dir / "piper.wav"
        args = [*cmd, "--model", str(model), "--output_raw", "--length_scale", f"{1.0 / job.rate:.3f}"]
        logger.debug("run: %s", " ".join(args))
        text = "\n".join(c.replace("\n", " ") for c in job.chunks) + "\n"
        with (
            subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as proc,
            wave.open(str(out), "wb") as wav,
        ):
            assert proc.stdin is not None
            assert proc.stdout is not None
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(_sample_rate(model))
            try:
                proc.stdin.write(text.encode("utf-8"))
                proc.stdin.close()
            except BrokenPipeError:
                pass
            while block := proc.stdout.read(8192):
                if job.cancel.is_set():
                    proc.kill()
                    break
                wav.writeframes(block[: len(block) - len(block) % 2])
                job.progress()
            rc = proc.wait()
        if job.cancel.is_set() or rc != 0 or job.first_audio_at is None:
            raise MediaError("media.tts_engine", "Piper 合成失败。", "piper failed.", kind="unavailable", returncode=rc)
        return SynthOutput(out, ["-f", "wav", "-i", str(out)])


register(PiperEngine())
