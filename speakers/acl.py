"""Who may read and write which topics: one rule set for Mosquitto's ACL file and the embedded broker.

A speaker reads only its own command topic, its regions' command topics and its time replies; it writes
only its own receipts, state and time requests. The server account writes commands and time replies and
reads receipts, state and time requests.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from speakers import protocol

# {username: {"read": [topic filters], "write": [topic filters]}}
AclRules = dict[str, dict[str, list[str]]]


@dataclass(frozen=True)
class SpeakerAccess:
    """A speaker's broker account: give `password` (hashed on write) or an existing `password_hash`."""

    speaker_id: str
    username: str
    regions: tuple[str, ...]  # its grid and every ancestor region code
    password: str | None = None
    password_hash: str | None = None  # a "$7$..." line tail, as made by `password_hash()`


def speaker_rules(prefix: str, speaker_id: str, regions: Iterable[str]) -> dict[str, list[str]]:
    """The topics one speaker may read and write."""
    read = [protocol.command_topic_for_speaker(prefix, speaker_id)]
    read += [protocol.command_topic_for_region(prefix, code) for code in regions]
    read.append(protocol.time_reply_topic(prefix, speaker_id))
    write = [
        protocol.receipt_topic(prefix, speaker_id),
        protocol.state_topic(prefix, speaker_id),
        protocol.time_request_topic(prefix, speaker_id),
    ]
    return {"read": read, "write": write}


def server_rules(prefix: str) -> dict[str, list[str]]:
    """The topics the server account may read and write."""
    return {
        "read": [
            protocol.receipt_topic(prefix),
            protocol.state_topic(prefix),
            protocol.time_request_topic(prefix),
        ],
        "write": [
            f"{prefix}/cmd/#",
            f"{prefix}/time/+/resp",
            protocol.state_topic(prefix),  # to clear the retained state of a removed speaker
        ],
    }


def acl_rules(prefix: str, speakers: Iterable[SpeakerAccess], server_user: str) -> AclRules:
    """The full rule set for a fleet plus the server account."""
    rules: AclRules = {server_user: server_rules(prefix)}
    for access in speakers:
        rules[access.username] = speaker_rules(prefix, access.speaker_id, access.regions)
    return rules


def server_accounts(rules: AclRules | None) -> set[str]:
    """Accounts with a wildcard write rule: the server's (a speaker writes only its own literal topics)."""
    if not rules:
        return set()
    return {user for user, entry in rules.items() if any("+" in f or "#" in f for f in entry.get("write", ()))}


def topic_matches(topic_filter: str, topic: str) -> bool:
    """True when `topic` matches the MQTT filter (with + and # wildcards)."""
    fparts = topic_filter.split("/")
    tparts = topic.split("/")
    for i, part in enumerate(fparts):
        if part == "#":
            return True
        if i >= len(tparts):
            return False
        if part not in ("+", tparts[i]):
            return False
    return len(fparts) == len(tparts)


def filter_within(requested: str, allowed: str) -> bool:
    """True when every topic matching `requested` also matches `allowed` (for subscriptions)."""
    rparts = requested.split("/")
    aparts = allowed.split("/")
    for i, part in enumerate(aparts):
        if part == "#":
            return True
        if i >= len(rparts):
            return False
        req = rparts[i]
        if req == "#":
            return False
        if part == "+":
            continue
        if req != part:  # a literal allowed level admits only that literal, not a wildcard
            return False
    return len(rparts) == len(aparts)


def _topic_allowed(rules: AclRules | None, username: str | None, topic: str, access: str) -> bool:
    """Whether one of `username`'s `access` ("read"/"write") filters matches `topic` (no rules = allowed)."""
    if rules is None:
        return True
    entry = rules.get(username or "")
    return bool(entry) and any(topic_matches(f, topic) for f in entry.get(access, ()))


def may_publish(rules: AclRules | None, username: str | None, topic: str) -> bool:
    """Whether `username` may publish to `topic` (no rules = no restriction)."""
    return _topic_allowed(rules, username, topic, "write")


def may_subscribe(rules: AclRules | None, username: str | None, topic_filter: str) -> bool:
    """Whether `username` may subscribe to `topic_filter`."""
    if rules is None:
        return True
    entry = rules.get(username or "")
    return bool(entry) and any(filter_within(topic_filter, f) for f in entry.get("read", ()))


def may_receive(rules: AclRules | None, username: str | None, topic: str) -> bool:
    """Whether a message on `topic` may be delivered to `username`."""
    return _topic_allowed(rules, username, topic, "read")


def mosquitto_acl_text(rules: AclRules) -> str:
    """Render the rules in Mosquitto's acl_file format."""
    lines = ["# generated by village-broadcast: do not edit by hand", ""]
    for username, entry in rules.items():
        lines.append(f"user {username}")
        read, write = entry.get("read", []), entry.get("write", [])
        for topic in read:
            lines.append(f"topic {'readwrite' if topic in write else 'read'} {topic}")
        lines += [f"topic write {topic}" for topic in write if topic not in read]
        lines.append("")
    return "\n".join(lines)
