"""The one error type of the media package, and factories for its common cases."""

from __future__ import annotations


class MediaError(Exception):
    """Base error of the media package: a stable code, a kind and a message in Chinese and English."""

    def __init__(self, code: str, zh: str, en: str, *, kind: str = "invalid", **details: object) -> None:
        super().__init__(en)
        self.code = code  # stable machine code, e.g. "media.not_audio"
        self.kind = kind  # invalid | too_large | unsupported | not_found | unavailable | forbidden | conflict
        self.zh = zh  # message for Chinese users (the default)
        self.en = en
        self.details = details  # JSON-safe extra facts (limits, measured values)


def empty() -> MediaError:
    """The upload has no bytes at all."""
    return MediaError("media.empty", "上传的文件是空的。", "The uploaded file is empty.")


def not_audio(detail: str = "") -> MediaError:
    """The bytes are not in any accepted audio format."""
    return MediaError(
        "media.not_audio",
        "文件不是可识别的音频（支持 WAV、MP3、M4A/AAC、OGG/Opus、WebM、FLAC、AMR）。",
        "The file is not recognised audio (accepted: WAV, MP3, M4A/AAC, OGG/Opus, WebM, FLAC, AMR).",
        kind="unsupported",
        detail=detail,
    )


def corrupt(detail: str = "") -> MediaError:
    """The container was recognised but the audio inside cannot be decoded completely."""
    return MediaError(
        "media.corrupt",
        "音频文件已损坏或不完整，无法完整解码。",
        "The audio file is damaged or truncated and cannot be decoded completely.",
        detail=detail[-2000:],
    )


def too_large(limit_bytes: int) -> MediaError:
    """The upload is over the size limit."""
    mb = limit_bytes / (1024 * 1024)
    return MediaError(
        "media.too_large",
        f"文件超过大小上限（{mb:g} MB）。",
        f"The file is over the size limit ({mb:g} MB).",
        kind="too_large",
        limit_bytes=limit_bytes,
    )


def too_long(limit_s: float) -> MediaError:
    """The audio is over the duration limit."""
    return MediaError(
        "media.too_long",
        f"音频时长超过上限（{limit_s:g} 秒）。",
        f"The audio is longer than the limit ({limit_s:g} s).",
        kind="too_large",
        limit_s=limit_s,
    )


def too_short(duration_s: float, limit_s: float) -> MediaError:
    """The audio (after trimming silence) is shorter than the minimum."""
    return MediaError(
        "media.too_short",
        f"有效音频太短（{duration_s:.2f} 秒，至少需要 {limit_s:g} 秒）。",
        f"The audio is too short ({duration_s:.2f} s of sound, at least {limit_s:g} s needed).",
        duration_s=round(duration_s, 3),
        limit_s=limit_s,
    )


def silent(max_lufs: float | None, limit_lufs: float) -> MediaError:
    """No speech-level signal anywhere in the audio."""
    return MediaError(
        "media.silent",
        "音频中没有可用的声音（近乎静音）。",
        "The audio contains no usable sound (it is silent or nearly so).",
        loudest_momentary_lufs=None if max_lufs is None else round(max_lufs, 1),
        limit_lufs=limit_lufs,
    )


def text_empty() -> MediaError:
    """Nothing speakable is left in the text."""
    return MediaError("media.text_empty", "没有可以朗读的文字。", "There is no text to speak.")


def text_too_long(length: int, limit: int) -> MediaError:
    """The text is over the maximum length."""
    return MediaError(
        "media.text_too_long",
        f"文字太长（{length} 字，上限 {limit} 字）。",
        f"The text is too long ({length} characters, limit {limit}).",
        kind="too_large",
        length=length,
        limit=limit,
    )


def tts_failed(attempts: list[dict[str, object]]) -> MediaError:
    """Every configured TTS engine failed."""
    return MediaError(
        "media.tts_failed",
        "语音合成失败：所有合成引擎都不可用。",
        "Speech synthesis failed: no TTS engine could speak the text.",
        kind="unavailable",
        attempts=attempts,
    )


def not_found(sha256: str) -> MediaError:
    """No stored media file under this hash."""
    return MediaError("media.not_found", "找不到该音频文件。", "No such media file.", kind="not_found", sha256=sha256)


def ffmpeg_failed(cmd: list[str], returncode: int | None, stderr: str) -> MediaError:
    """The ffmpeg runner failed for a reason that is not the input's fault."""
    return MediaError(
        "media.ffmpeg_failed",
        "音频处理程序出错。",
        "The audio processor (ffmpeg) failed.",
        kind="unavailable",
        command=" ".join(cmd[:3]) + " ...",
        returncode=returncode,
        stderr=stderr[-2000:],
    )
