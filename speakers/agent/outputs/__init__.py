"""Audio outputs of the agent: sound card, file sink, null. Chosen by name from the registry."""

from speakers.agent.outputs import null as _null  # noqa: F401  (registers "null")
from speakers.agent.outputs import sink as _sink  # noqa: F401  (registers "sink")
from speakers.agent.outputs import soundcard as _soundcard  # noqa: F401  (registers "soundcard")
from speakers.agent.outputs.base import OUTPUTS, Output, Playback, create_output, register

__all__ = ["OUTPUTS", "Output", "Playback", "create_output", "register"]
