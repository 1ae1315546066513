"""Outputs: the file sink writes what was heard at unity gain; the sound card path runs on miniaudio."""

from __future__ import annotations

import json
import time
import wave
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from speakers.agent.audio import PcmCache, decode_file
from speakers.agent.outputs import create_output
from speakers.agent.outputs.soundcard import SoundcardOutput, render, volume_gain
from speakers.errors import SpeakerError
from tests.conftest import wait_for
from tests.meter import measure

from .conftest import Clip


def test_sink_keeps_loudness_and_cuts_at_the_end(clips: dict[str, Clip], tmp_path: Path) -> None:
    sink = create_output("sink", sink_dir=tmp_path)
    clip = clips["long"]
    pcm = decode_file(clip.path)
    assert abs(pcm.duration_s - 3.0) < 0.06
    whole = sink.play(pcm, start_at=time.time(), volume=40, repeat=1, gap_s=0, label="whole")
    whole.end(whole.began_at + 3.0, completed=True)
    half = sink.play(pcm, start_at=time.time() + 10, volume=40, repeat=1, gap_s=0, label="half/../x")
    assert half.file is not None
    assert "/" not in half.file
    assert half.end(half.began_at + 1.25, completed=False) == pytest.approx(1.25, abs=0.001)
    source, written = measure(clip.path), measure(tmp_path / (whole.file or ""))
    assert abs(source.integrated - written.integrated) < 0.2, "the sink records at unity gain (volume is metadata)"
    with wave.open(str(tmp_path / (half.file or ""))) as wav:
        assert wav.getnframes() / wav.getframerate() == pytest.approx(1.25, abs=0.001)
    sink.record({"event": "started", "at": 1.0})
    assert json.loads((tmp_path / "timeline.jsonl").read_text()) == {"event": "started", "at": 1.0}


def test_volume_curve_and_render() -> None:
    assert volume_gain(100) == 1.0
    assert volume_gain(0) == 0.0
    assert 20 * np.log10(volume_gain(90)) == pytest.approx(-6.0, abs=0.01)
    assert 20 * np.log10(volume_gain(50)) == pytest.approx(-30.0, abs=0.01)
    from speakers.agent.audio import Pcm

    pcm = Pcm((np.ones(100, dtype="<i2") * 10000).tobytes(), 1000, 1)
    out = np.frombuffer(render(pcm, 80, 2, 0.01), dtype="<i2")
    assert len(out) == 210
    assert out[0] == int(10000 * volume_gain(80))
    assert out[105] == 0


def test_soundcard_output_on_the_null_audio_backend(clips: dict[str, Clip], monkeypatch: pytest.MonkeyPatch) -> None:
    """The real miniaudio device (null backend) is fed silence until the start, then the clip at its volume."""
    import miniaudio

    fed: list[bytes] = []

    class TappedDevice(miniaudio.PlaybackDevice):
        """The real device; a tap records every chunk it pulls."""

        def start(self, callback_generator: Any) -> None:
            def tap() -> Generator[bytes, int, None]:
                frames = yield b""
                while True:
                    try:
                        chunk = callback_generator.send(frames)
                    except StopIteration:
                        return
                    fed.append(bytes(chunk))
                    frames = yield chunk

            tapped = tap()
            next(tapped)
            super().start(tapped)

    monkeypatch.setattr(miniaudio, "PlaybackDevice", TappedDevice)
    card = SoundcardOutput(backends=["null"])  # miniaudio is a dependency: failing to load it fails the test
    pcm = decode_file(clips["tiny"].path)
    expected = render(pcm, 70, 1, 0)
    own_silence = len(expected) - len(expected.lstrip(b"\x00"))
    lead_s = 0.2
    playback = card.play(pcm, start_at=time.time() + lead_s, volume=70, repeat=1, gap_s=0, label="x")
    try:
        heard = wait_for(lambda: (b := b"".join(fed)) and len(b.lstrip(b"\x00")) >= 4000 and b, "audio pulled")
    finally:
        playback.end(time.time(), completed=False)
        card.close()
    frame_bytes = 2 * pcm.channels
    silence = len(heard) - len(heard.lstrip(b"\x00")) - own_silence
    assert silence % frame_bytes == 0
    assert 0 <= silence / frame_bytes / pcm.sample_rate <= lead_s + 0.01, "silence until the start, no longer"
    audio = heard[silence:]
    assert audio[:4000] == expected[:4000], "then the clip itself, scaled by the volume"
    assert expected != np.frombuffer(pcm.samples, dtype="<i2").tobytes(), "volume 70 is not unity"


def test_unknown_output_and_decode_errors(tmp_path: Path) -> None:
    with pytest.raises(SpeakerError):
        create_output("loudspeaker-array")
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"not audio at all" * 10)
    with pytest.raises(SpeakerError) as exc:
        PcmCache().get("0" * 64, junk)
    assert exc.value.code == "speakers.decode_failed"
