"""Faster Ed25519 verification through the system's libsodium, when the machine has it.

Verifying is the largest cost of a command on a small device, and of a simulated fleet on the benchmark
box; libsodium does it in about 60 % of the time of OpenSSL (through `cryptography`). Nothing depends on it:
without libsodium `cryptography` verifies, with the same results (tests check both agree). Signing always
uses `cryptography`. $BROADCAST_LIBSODIUM names the library file to use, or "none" to not use one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Callable

logger = logging.getLogger(__name__)

ENV_OVERRIDE = "BROADCAST_LIBSODIUM"

Verify = Callable[[bytes, bytes, bytes], bool]


def _load() -> Verify | None:
    choice = os.environ.get(ENV_OVERRIDE, "")
    if choice.lower() == "none":
        return None
    path = choice or ctypes.util.find_library("sodium")
    if not path:
        return None
    try:
        lib = ctypes.CDLL(path)
        if lib.sodium_init() < 0:
            return None
        fn = lib.crypto_sign_verify_detached
    except (OSError, AttributeError):
        logger.debug("libsodium at %s unusable", path)
        return None
    fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulonglong, ctypes.c_char_p]
    fn.restype = ctypes.c_int
    logger.debug("verifying Ed25519 signatures with %s", path)

    def verify(signature: bytes, message: bytes, public_key: bytes) -> bool:
        if len(signature) != 64 or len(public_key) != 32:
            return False
        return fn(signature, message, len(message), public_key) == 0

    return verify


sodium_verify: Verify | None = _load()
