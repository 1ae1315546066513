"""TTS: the offline engine speaks, the chain fails over within its deadline, keys are stable."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from media import MediaConfig, MediaError, MediaStore, Wrap, list_voices, measure_loudness, synthesize_text, tts_key
from media.errors import MediaError as BaseMediaError
from media.tts import SynthJob, SynthOutput, TtsEngine, register, unregister
from media.tts.chain import engine_order


class FakeHangingEngine(TtsEngine):
    """An engine whose server accepts the connection and then never sends a byte."""

    name = "fake-hang"

    def __init__(self) -> None:
        self.released = threading.Event()

    def default_voice(self, config: MediaConfig) -> str:
        return "hang"

    def synthesize(self, job: SynthJob) -> SynthOutput:
        job.cancel.wait(30)  # honours cancellation like the real drivers do
        self.released.set()
        raise BaseMediaError("media.tts_engine", "挂起", "hung", kind="unavailable")


class FakeStallingEngine(FakeHangingEngine):
    """An engine that sends some audio, then stalls for good."""

    name = "fake-stall"

    def synthesize(self, job: SynthJob) -> SynthOutput:
        job.progress()
        return super().synthesize(job)


class FakeBrokenEngine(TtsEngine):
    """An engine that fails at once (a missing library, a refused connection)."""

    name = "fake-broken"

    def default_voice(self, config: MediaConfig) -> str:
        return "broken"

    def synthesize(self, job: SynthJob) -> SynthOutput:
        raise OSError("connection refused")


@pytest.fixture
def fakes() -> Iterator[dict[str, TtsEngine]]:
    engines = {e.name: e for e in (FakeHangingEngine(), FakeStallingEngine(), FakeBrokenEngine())}
    for engine in engines.values():
        register(engine)
    yield engines
    for name in engines:
        unregister(name)


TEXT = "各位村民，明天上午9:00在村委会召开防汛会议。"


def test_offline_engine_speaks_normalized_text(store: MediaStore, config: MediaConfig) -> None:
    info = synthesize_text(TEXT, store, config)
    assert (info.source, info.engine, info.voice) == ("tts", "espeak", "cmn")
    assert info.spoken_text == "各位村民，明天上午九点在村委会召开防汛会议。"
    meter = measure_loudness(store.path(info.sha256))
    assert abs(meter.integrated - config.target_lufs) <= 0.5
    assert meter.true_peak <= config.true_peak_dbtp
    assert info.duration_ms > 2000
    assert info.tts_first_audio_ms is not None
    assert info.tts_first_audio_ms < 1000


def test_rate_changes_duration(store: MediaStore, config: MediaConfig) -> None:
    normal = synthesize_text(TEXT, store, config)
    fast = synthesize_text(TEXT, store, config, rate=1.5)
    slow = synthesize_text(TEXT, store, config, rate=0.7)
    assert fast.duration_ms < normal.duration_ms * 0.8
    assert slow.duration_ms > normal.duration_ms * 1.2


def _offline_seconds(store: MediaStore, config: MediaConfig) -> float:
    """How long the offline engine alone takes for TEXT on this machine right now (the yardstick for bounds)."""
    started = time.monotonic()
    synthesize_text(TEXT + "（基准）", store, replace(config, tts_engines=("espeak",)))
    return time.monotonic() - started


def test_hanging_engine_costs_its_deadline_and_no_more(
    fakes: dict[str, FakeHangingEngine], store: MediaStore, config: MediaConfig
) -> None:
    config = replace(config, tts_engines=("fake-hang", "espeak"))
    deadline = config.tts_first_audio_timeout_s
    base = _offline_seconds(store, config)
    started = time.monotonic()
    info = synthesize_text(TEXT, store, config)
    elapsed = time.monotonic() - started
    assert info.engine == "espeak"
    assert info.tts_attempts[0]["engine"] == "fake-hang"
    assert info.tts_attempts[0]["error"] == "media.tts_timeout"
    assert elapsed >= deadline - 0.1, "the hung engine had its full deadline"
    # the deadline plus the offline synthesis this machine just measured (x3 for a busy machine), never 30 s
    assert elapsed < deadline + 3 * base + 1.0, (elapsed, base)
    assert fakes["fake-hang"].released.wait(10), "the hung engine was told to stop"


def test_stalled_engine_fails_over(fakes: dict[str, TtsEngine], store: MediaStore, config: MediaConfig) -> None:
    config = replace(config, tts_engines=("fake-stall", "espeak"), tts_first_audio_timeout_s=1.0)
    base = _offline_seconds(store, config)
    started = time.monotonic()
    info = synthesize_text(TEXT, store, config)
    elapsed = time.monotonic() - started
    assert info.engine == "espeak"
    assert info.tts_attempts[0]["reason"] == "stalled or too slow"
    assert elapsed < 1.0 + 3 * base + 1.0, (elapsed, base)


def _edge_service_answers() -> bool:
    """True when the online TTS service accepts a TCP connection from here (a probe, not a synthesis)."""
    from edge_tts.constants import WSS_URL

    host = urlsplit(WSS_URL).hostname or ""
    try:
        socket.create_connection((host, 443), timeout=5).close()
    except OSError:
        return False
    return True


def test_real_edge_engine_speaks(store: MediaStore) -> None:
    """The online engine alone (no fallback to hide a failure) speaks Mandarin at the target loudness."""
    if not _edge_service_answers():
        pytest.skip("online TTS service (edge-tts) unreachable from this machine")
    config = MediaConfig(tts_engines=("edge",))
    info = synthesize_text(TEXT, store, config)
    assert info.engine == "edge"
    assert info.voice == config.edge_voice
    assert info.duration_ms > 2000
    assert abs(measure_loudness(store.path(info.sha256)).integrated - -16.0) <= 0.5


def test_an_edge_service_that_never_answers_fails_over_within_its_deadline(
    store: MediaStore, config: MediaConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real fault made here: a TCP server that accepts and never answers stands in for the service."""
    import edge_tts.communicate

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        monkeypatch.setattr(edge_tts.communicate, "WSS_URL", f"wss://127.0.0.1:{silent.getsockname()[1]}/edge/v1?x=1")
        config = replace(config, tts_engines=("edge", "espeak"))
        base = _offline_seconds(store, config)
        started = time.monotonic()
        info = synthesize_text(TEXT, store, config)
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert info.engine == "espeak"
    assert info.tts_attempts[0]["engine"] == "edge"
    assert elapsed >= config.edge_connect_timeout_s - 0.1
    assert elapsed < config.edge_connect_timeout_s + 3 * base + 1.0, (elapsed, base)


def test_every_engine_failing_raises_and_stores_nothing(
    fakes: dict[str, TtsEngine], store: MediaStore, config: MediaConfig
) -> None:
    config = replace(config, tts_engines=("fake-broken", "piper", "no-such-engine"))
    with pytest.raises(MediaError) as caught:
        synthesize_text(TEXT, store, config)
    assert caught.value.code == "media.tts_failed"
    assert caught.value.kind == "unavailable"
    assert [a["engine"] for a in caught.value.details["attempts"]] == ["fake-broken", "piper", "no-such-engine"]
    assert store.hashes() == []


def test_voice_choice_puts_its_engine_first(config: MediaConfig) -> None:
    config = replace(config, tts_engines=("edge", "espeak"))
    assert engine_order(config, None) == [("edge", None), ("espeak", None)]
    assert engine_order(config, "espeak:cmn") == [("espeak", "cmn"), ("edge", None)]
    assert engine_order(config, "zh-CN-YunxiNeural") == [("edge", "zh-CN-YunxiNeural"), ("espeak", None)]


def test_chosen_voice_is_recorded(store: MediaStore, config: MediaConfig) -> None:
    info = synthesize_text(TEXT, store, config, voice="espeak:cmn")
    assert (info.engine, info.voice) == ("espeak", "cmn")


def test_list_voices(config: MediaConfig, tmp_path: Path) -> None:
    voices = list_voices(replace(config, tts_engines=("edge", "espeak", "piper")))
    keys = [v.key for v in voices]
    assert keys[0] == "edge:zh-CN-XiaoxiaoNeural"
    assert "espeak:cmn" in keys
    assert all(v.label_zh for v in voices)
    assert not any(v.engine == "piper" for v in voices)  # no model configured: not offered


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "media.text_empty"),
        ("   \n ", "media.text_empty"),
        ("🔥🔥★★", "media.text_empty"),
        ("喂" * 2001, "media.text_too_long"),
    ],
)
def test_text_errors_store_nothing(text: str, code: str, store: MediaStore, config: MediaConfig) -> None:
    with pytest.raises(MediaError) as caught:
        synthesize_text(text, store, config)
    assert caught.value.code == code
    assert store.hashes() == []


def test_long_text_is_split_and_fully_spoken(store: MediaStore, config: MediaConfig) -> None:
    sentence = "请各位村民注意防火，上山不要带火种。"
    short = synthesize_text(sentence, store, config)
    long = synthesize_text(sentence * 12, store, replace(config, tts_chunk_chars=40))
    assert long.duration_ms > short.duration_ms * 10


def test_tts_key_is_stable_and_sensitive(config: MediaConfig) -> None:
    key = tts_key(TEXT, None, 1.0, None, config)
    assert key == tts_key(TEXT, None, 1.0, None, config)
    assert key == tts_key("  " + TEXT + "\n", None, 1.0, Wrap(), config)  # whitespace and a plain wrap
    assert len(key) == 64
    assert int(key, 16) >= 0
    others = {
        tts_key(TEXT + "。", None, 1.0, None, config),
        tts_key(TEXT, "espeak:cmn", 1.0, None, config),
        tts_key(TEXT, None, 1.2, None, config),
        tts_key(TEXT, None, 1.0, Wrap(repeat=2), config),
        tts_key(TEXT, None, 1.0, Wrap(attention_tone=True), config),
        tts_key(TEXT, None, 1.0, None, replace(config, target_lufs=-18.0)),
        tts_key(TEXT, None, 1.0, None, replace(config, output_format="opus")),
    }
    assert key not in others
    assert len(others) == 7


FAKE_PIPER = '''#!{python}
"""FakePiper: stands in for the piper executable (no voice model can be downloaded here).

It honours piper's command-line contract (--model, --output_raw, --length_scale; text lines on stdin, raw
16-bit mono PCM on stdout) and speaks each line as a vowel-like tone, 0.08 s per character.
"""
import math, struct, sys
args = sys.argv[1:]
assert "--output_raw" in args and "--model" in args
scale = float(args[args.index("--length_scale") + 1])
rate = 22050
for line in sys.stdin:
    n = int(len(line.strip()) * 0.08 * scale * rate)
    samples = (int(8000 * math.sin(2 * math.pi * 220 * i / rate) * (0.6 + 0.4 * math.sin(2 * math.pi * 3 * i / rate)))
               for i in range(n))
    sys.stdout.buffer.write(b"".join(struct.pack("<h", s) for s in samples))
    sys.stdout.buffer.flush()
'''


def test_piper_engine_speaks_through_the_piper_command_line(tmp_path: Path, store: MediaStore) -> None:
    import json
    import stat
    import sys

    exe = tmp_path / "piper"
    exe.write_text(FAKE_PIPER.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    model = tmp_path / "zh_CN-test.onnx"
    model.write_bytes(b"not read by the stand-in")
    (tmp_path / "zh_CN-test.onnx.json").write_text(json.dumps({"audio": {"sample_rate": 22050}}))
    config = MediaConfig(tts_engines=("piper", "espeak"), piper_model=str(model), piper_exe=str(exe))
    voices = list_voices(config)
    assert any(v.engine == "piper" and v.id == "zh_CN-test" for v in voices)
    normal = synthesize_text("各位村民请注意，明天停电。", store, config)
    assert normal.engine == "piper"
    assert normal.voice == "zh_CN-test"
    assert abs(normal.loudness_lufs - config.target_lufs) <= 0.5
    fast = synthesize_text("各位村民请注意，明天停电。", store, config, rate=1.5)
    assert fast.engine == "piper"
    assert fast.duration_ms < normal.duration_ms * 0.8  # --length_scale carried the speed
