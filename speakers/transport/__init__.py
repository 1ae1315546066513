"""Broker transports: the server-side driver registry (`connect`) and the lean asyncio client."""

from speakers.transport import mqtt as _mqtt  # noqa: F401  (registers the mqtt and mqtts drivers)
from speakers.transport.base import TRANSPORTS, BrokerAddress, Handler, Message, Transport, connect, register

__all__ = ["TRANSPORTS", "BrokerAddress", "Handler", "Message", "Transport", "connect", "register"]
