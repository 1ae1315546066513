"""Words the services make in Chinese (senders, clip names, speaker alarms), said again in the user's language."""

from __future__ import annotations

from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from broadcast.i18n import ui_language
from broadcast.models import Broadcast, Clip
from broadcast.services import history

SOURCE_LABELS = {
    "console": _l("控制台"),
    "api": _l("接口"),
    "cli": _l("命令行"),
    "schedule": _l("定时计划"),
    "alert": _l("预警"),
}
ALARM_LABELS = {
    "never_seen": _l("从未上线"),
    "offline": _l("离线"),
    "failing": _l("连续播发失败"),
    "rejecting": _l("拒绝指令"),
}
# What the speakers page asks fleet.alarms for, so the English details can name the same numbers.
LAST_PLAYS = 3
REJECTION_HOURS = 24


def clip_label(clip: Clip | None) -> str:
    """What a clip is called in lists: its title, else its text, else what kind of recording it is."""
    if clip is None or clip.title or clip.text:
        return history.clip_label(clip)
    return _("现场录音 #%(id)s", id=clip.id) if clip.source == "recording" else _("上传录音 #%(id)s", id=clip.id)


def sender_label(item: Broadcast, sender: str) -> str:
    """Who sent a broadcast: the person's name as the service found it, or the source it came from."""
    if item.created_by is not None:
        return sender
    return str(SOURCE_LABELS.get(item.source, sender))


def alarm_detail(alarm: Any) -> str:
    """A speaker alarm explained (the fleet service writes it in Chinese)."""
    if ui_language() == "zh":
        return alarm.detail
    if alarm.kind == "failing":
        return _("最近 %(n)s 次播发均未成功", n=LAST_PLAYS)
    if alarm.kind == "rejecting":
        return _("%(hours)s 小时内拒绝过指令（可能有伪造或重放）", hours=REJECTION_HOURS)
    return str(ALARM_LABELS.get(alarm.kind, alarm.kind))


# What the pages' scripts say, handed to them as JSON in base.html (`window.uiText` in console.js reads it).
JS_TEXTS = {
    "online": _l("在线"),
    "offline": _l("离线"),
    "held_banner": _l("有 %(n)s 条预警等待确认，请立即处理 ›"),
    "coverage": _l("已播 %(sounded)s / %(total)s 台"),
    "clip_info": _l("时长 %(s)s 秒 · 响度 %(lufs)s LUFS · 峰值 %(peak)s dBTP"),
    "clip_voice": _l(" · 发音人 %(voice)s（%(engine)s）"),
    "clip_format": _l(" · 原始格式 %(format)s"),
    "list_separator": _l("；"),
    "uploading_percent": _l("上传中 %(n)s%%"),
    "processing": _l("正在处理音频…"),
    "failed_status": _l("处理失败（%(status)s）"),
    "network_error": _l("网络错误，请重试。"),
    "uploading": _l("上传中…"),
    "synthesizing": _l("正在合成语音…"),
    "no_recording": _l("此浏览器不支持录音，请改用上传录音文件（录音需要 HTTPS 或本机访问）。"),
    "recording_title": _l("现场录音 %(when)s"),
    "recording_time": _l("录音中 %(s)s 秒"),
    "no_microphone": _l("无法使用麦克风，请检查浏览器权限。"),
    "sending": _l("正在发布…"),
}
