"""Media pipeline benchmark (issue 3 §7): speed, memory, TTS and loudness accuracy on a generated corpus.

Run:  .venv/bin/python benchmarks/media_bench.py [--quick] [--format mp3|opus]
--quick skips the 30-minute input (and its memory figure).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from media import MediaConfig, MediaStore, ingest_upload, measure_loudness, synthesize_text
from media.tts import SynthJob
from media.tts.espeak import EspeakEngine
from tests.audio import espeak_wav, ffmpeg, read_wav_mono, write_wav

NOTICE = (
    "各位村民请注意：根据县气象台2026年8月12日10:30发布的台风橙色预警，第3号台风预计今天下午14:00到20:00"
    "影响我镇，最大风力8到10级，阵风12级，累计降雨量100到200毫米。请沿河、低洼地带的群众立即转移到村委会"
    "安置点，不要在河边、山边停留。如有险情请拨打防汛值班电话0715-1234567或12345热线。"
)


def speech_minute(work: Path) -> Path:
    """About one minute of espeak-ng Mandarin at 48 kHz mono (16-bit WAV)."""
    spoken = espeak_wav(work, *[NOTICE] * 3)
    out = work / "speech60.wav"
    ffmpeg("-stream_loop", "-1", "-i", str(spoken), "-t", "60", "-ar", "48000", "-ac", "1", str(out))
    return out


def corpus(work: Path, minute: Path) -> dict[str, Path]:
    """The six cases of issue 3 §7, each a 16-bit WAV."""
    sr = 48000
    speech = read_wav_mono(minute, sr)[: sr * 20]
    rng = np.random.default_rng(11)
    t = np.arange(sr * 20) / sr
    cases: dict[str, Path] = {}
    cases["very quiet speech (-42 LUFS)"] = write_wav(work / "quiet.wav", speech * 10 ** (-24 / 20), sr)
    cases["loud clipped speech"] = write_wav(work / "clipped.wav", speech * 10 ** (18 / 20), sr)
    notes = [261.6, 329.6, 392.0, 523.3, 440.0, 349.2]
    music = np.zeros_like(t)
    for i, f in enumerate(notes * 6):
        seg = (t >= i * 0.55) & (t < i * 0.55 + 0.5)
        phase = 2 * np.pi * f * (t[seg] - i * 0.55)
        music[seg] += sum(np.sin(k * phase) / k for k in (1, 2, 3, 5)) * np.exp(-(t[seg] - i * 0.55) * 3)
    cases["music-like tones"] = write_wav(work / "music.wav", music * 0.4, sr)
    pink = np.cumsum(rng.standard_normal(t.size))
    pink = np.diff(pink, prepend=0) * 0.3 + np.convolve(rng.standard_normal(t.size), np.ones(8) / 8, "same")
    noise = pink / np.std(pink) * np.std(speech) * 10 ** (-10 / 20) + 0.05 * np.sin(2 * np.pi * 50 * t)
    cases["noisy recording (SNR 10 dB + hum)"] = write_wav(work / "noisy.wav", speech * 0.3 + noise * 0.3, sr)
    active = np.flatnonzero(np.abs(speech) > 0.05)[0]
    cases["1-second clip"] = write_wav(work / "one.wav", speech[active : active + sr] * 0.5, sr)
    stereo = np.stack((speech * 0.4, np.roll(speech, 480) * 0.25), axis=1)
    cases["stereo 48 kHz"] = write_wav(work / "stereo.wav", stereo, sr)
    return cases


def tree_rss_kib(pid: int) -> int:
    """Resident memory of PID and all its descendants, from /proc.

    A descendant still running PID's own executable was caught between fork and exec: it shares
    PID's pages (vfork), so it is not counted twice.
    """
    total = 0
    stack = [pid]
    try:
        own_exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        own_exe = ""
    while stack:
        p = stack.pop()
        try:
            if p == pid or os.readlink(f"/proc/{p}/exe") != own_exe:
                with open(f"/proc/{p}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def child_ingest(src: str, store_root: str, fmt: str) -> None:
    """Run one ingest in this (fresh) process and print timing as JSON."""
    config = MediaConfig(output_format=fmt, tts_engines=("espeak",))
    store = MediaStore(Path(store_root))
    # a server process is warm: one short clip first, so lazy imports and first allocations are not timed
    warm = Path(store_root) / "warm.wav"
    write_wav(warm, np.sin(2 * np.pi * 440 * np.arange(48000) / 48000) * 0.3, 48000)
    ingest_upload(warm, store, config)
    r0, c0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    info = ingest_upload(Path(src), store, config)
    wall = time.perf_counter() - started
    r1, c1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) + (
        c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime
    )
    # not timed: the stored file measured again by ffmpeg alone (its own decoder and ebur128)
    meter = measure_loudness(store.path(info.sha256))
    print(
        json.dumps(
            {
                "wall": wall,
                "cpu": cpu,
                "lufs": meter.integrated,
                "tp": meter.true_peak,
                "duration_s": info.duration_ms / 1000,
            }
        )
    )


def measured_ingest(src: Path, store_root: Path, fmt: str) -> dict[str, float]:
    """Ingest SRC in a child process while sampling the process tree's memory every 10 ms."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child-ingest", str(src), str(store_root), fmt], stdout=subprocess.PIPE
    )
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss_kib(proc.pid))
        time.sleep(0.01)
    out = proc.stdout.read() if proc.stdout else b""
    if proc.stdout:
        proc.stdout.close()
    if proc.returncode != 0:
        raise SystemExit(f"child ingest failed on {src}")
    result = json.loads(out)
    result["peak_mb"] = peak / 1024
    return result


def bench_normalize(work: Path, minute: Path, fmt: str, quick: bool) -> list[str]:
    rows = [
        "| input | audio | wall | CPU (one core) | × real time (CPU) | peak RSS incl. ffmpeg "
        "| stored LUFS | stored dBTP |",
        "|---|---|---|---|---|---|---|---|",
    ]
    minute_mp3 = work / "speech60.mp3"
    ffmpeg("-i", str(minute), "-c:a", "libmp3lame", "-b:a", "128k", str(minute_mp3))
    inputs = [("1-minute speech, WAV 48 kHz", minute, 60.0), ("1-minute speech, MP3 128k", minute_mp3, 60.0)]
    if not quick:
        # a 30-minute upload within the 50 MB limit: MP3 at 128 kbit/s (about 29 MB)
        long = work / "speech30min.mp3"
        ffmpeg("-stream_loop", "29", "-i", str(minute), "-c:a", "libmp3lame", "-b:a", "128k", str(long))
        inputs.append(("30-minute speech, MP3 128k", long, 1800.0))
    for label, src, seconds in inputs:
        r = measured_ingest(src, work / "store-bench", fmt)
        rows.append(
            f"| {label} | {seconds:.0f} s | {r['wall']:.2f} s | {r['cpu']:.2f} s | {seconds / r['cpu']:.0f}× "
            f"| {r['peak_mb']:.0f} MB | {r['lufs']:.1f} | {r['tp']:.1f} |"
        )
    return rows


def bench_tts(work: Path, fmt: str) -> list[str]:
    store = MediaStore(work / "store-tts")
    offline = MediaConfig(output_format=fmt, tts_engines=("espeak",))
    job = SynthJob(chunks=[NOTICE], voice="cmn", rate=1.0, out_dir=work, config=offline)
    t0 = time.perf_counter()
    out = EspeakEngine().synthesize(job)
    engine_s = time.perf_counter() - t0
    first_ms = ((job.first_audio_at or 0) - job.started_at) * 1000
    audio_s = measure_loudness(out.path).duration_s
    synthesize_text("预热。", store, offline)
    t0 = time.perf_counter()
    info = synthesize_text(NOTICE, store, offline)
    chain_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    online_first = synthesize_text(NOTICE + "（二）", store, replace(offline, tts_engines=("edge", "espeak")))
    failover_s = time.perf_counter() - t0 - chain_s
    edge = online_first.tts_attempts[0] if online_first.tts_attempts else {"error": "edge answered"}
    return [
        "| measure | value |",
        "|---|---|",
        f"| notice length | {len(NOTICE)} characters, {audio_s:.1f} s of speech |",
        f"| espeak-ng synthesis alone | {engine_s * 1000:.0f} ms ({audio_s / engine_s:.0f}× real time) |",
        f"| time to first audio (espeak-ng) | {first_ms:.1f} ms |",
        f"| text → stored clip (normalize, TTS, chain, encode, measure) | {chain_s:.2f} s "
        f"({info.duration_ms / 1000 / chain_s:.0f}× real time) |",
        f"| edge-tts unreachable: time lost before fail-over | {max(0.0, failover_s):.2f} s ({edge.get('error')}) |",
    ]


def bench_corpus(work: Path, minute: Path, fmt: str) -> list[str]:
    config = MediaConfig(output_format=fmt, tts_engines=("espeak",))
    store = MediaStore(work / "store-corpus")
    rows = ["| case | input LUFS | output LUFS | error | true peak | pass |", "|---|---|---|---|---|---|"]
    worst = 0.0
    for label, path in corpus(work, minute).items():
        before = measure_loudness(path).integrated
        info = ingest_upload(path, store, config)
        meter = measure_loudness(store.path(info.sha256))
        err = meter.integrated - config.target_lufs
        worst = max(worst, abs(err))
        ok = abs(err) <= 0.5 and meter.true_peak <= config.true_peak_dbtp
        note = " (clipped-input warning)" if "media.clipped_input" in info.warnings else ""
        rows.append(
            f"| {label}{note} | {before:.1f} | {meter.integrated:.1f} | {err:+.1f} LU | {meter.true_peak:.1f} dBTP "
            f"| {'yes' if ok else 'NO'} |"
        )
    rows.append(
        f"\nworst loudness error {worst:.1f} LU; target {config.target_lufs} LUFS ±0.5, "
        f"ceiling {config.true_peak_dbtp} dBTP"
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 30-minute input")
    parser.add_argument("--format", choices=("mp3", "opus"), default="mp3")
    parser.add_argument("--child-ingest", nargs=3, metavar=("SRC", "STORE", "FMT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_ingest:
        child_ingest(*args.child_ingest)
        return
    with tempfile.TemporaryDirectory(prefix="media-bench-") as tmp:
        work = Path(tmp)
        minute = speech_minute(work)
        print(f"## Media benchmark ({args.format}, {os.cpu_count()} CPUs, ffmpeg from imageio-ffmpeg)\n")
        print(
            "### Normalization chain (decode → mono → resample → high-pass → trim → loudness + limiter → "
            "encode → measure)\n"
        )
        print("\n".join(bench_normalize(work, minute, args.format, args.quick)))
        print("\n### TTS\n")
        print("\n".join(bench_tts(work, args.format)))
        print("\n### Loudness over the generated corpus (measured with ffmpeg ebur128 on the stored file)\n")
        print("\n".join(bench_corpus(work, minute, args.format)))


if __name__ == "__main__":
    main()
