"""speakers: the speaker protocol, its signing and transports, the embedded broker, the reference agent and
the fleet simulator. Imports neither Flask nor `broadcast`."""

__version__ = "0.1.0"
