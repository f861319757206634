"""BMv2's learn notifications: a nanomsg SUB socket (ctypes on libnanomsg, the
library simple_switch itself publishes with) and the ``LEA|`` message format.

simple_switch publishes every learn buffer (``digest<T>(...)`` in a v1model program) on
its notifications socket (``--notifications-addr``, default
``ipc:///tmp/bmv2-<device-id>-notifications.ipc``) as one message: the packed 32-byte
header of ``bm_apps/notifications.cpp`` (``LEA_hdr_t``: topic ``LEA|``, 64-bit switch
id, context id, list id, 64-bit buffer id, sample count; little-endian, as the switch's
host writes it) followed by the samples, each the digest's fields in order,
every field big-endian in ``ceil(width / 8)`` bytes. The receiver acknowledges each
buffer (``bm_learning_ack_buffer``) so the switch's learn filter lets the same sample
through again later.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import struct
from dataclasses import dataclass

__all__ = ["NanomsgError", "SubSocket", "LearnMessage", "decode_learn", "LEARN_HEADER"]

#: ``LEA_hdr_t`` (packed): char[4] topic, uint64 switch_id, uint32 cxt_id, int list_id,
#: uint64 buffer_id, unsigned num_samples
LEARN_HEADER = struct.Struct("<4sQIiQI")

_AF_SP, _NN_SUB, _NN_SUB_SUBSCRIBE, _NN_SOL_SOCKET, _NN_RCVTIMEO = 1, 33, 1, 0, 5
_NN_MSG = ctypes.c_size_t(-1).value
_ETIMEDOUT, _EAGAIN, _EINTR = 110, 11, 4


class NanomsgError(OSError):
    """libnanomsg missing, or a socket call failed."""


def _lib() -> ctypes.CDLL:
    name = ctypes.util.find_library("nanomsg")
    if name is None:
        raise NanomsgError("libnanomsg is not installed (it comes with BMv2's dependencies: "
                           "Debian's libnanomsg5 / libnanomsg-dev)")
    lib = ctypes.CDLL(name, use_errno=True)
    lib.nn_recv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    lib.nn_setsockopt.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
                                  ctypes.c_size_t]
    lib.nn_connect.argtypes = [ctypes.c_int, ctypes.c_char_p]
    lib.nn_freemsg.argtypes = [ctypes.c_void_p]
    lib.nn_strerror.restype = ctypes.c_char_p
    return lib


class SubSocket:
    """A nanomsg SUB socket connected to ``address``, subscribed to every topic."""

    def __init__(self, address: str, timeout_ms: int = 200) -> None:
        self.lib = lib = _lib()
        self.fd = lib.nn_socket(_AF_SP, _NN_SUB)
        if self.fd < 0:
            self._fail("nn_socket")
        self._opt(_NN_SUB, _NN_SUB_SUBSCRIBE, b"")
        self._opt(_NN_SOL_SOCKET, _NN_RCVTIMEO, struct.pack("i", timeout_ms))
        if lib.nn_connect(self.fd, address.encode()) < 0:
            self._fail(f"nn_connect {address}")

    def _fail(self, what: str) -> None:
        err = ctypes.get_errno()
        raise NanomsgError(err, f"{what}: {self.lib.nn_strerror(err).decode()}")

    def _opt(self, level: int, opt: int, value: bytes) -> None:
        buf = ctypes.create_string_buffer(value, len(value))
        if self.lib.nn_setsockopt(self.fd, level, opt, buf, len(value)) < 0:
            self._fail("nn_setsockopt")

    def recv(self) -> bytes | None:
        """One message, or None when the receive timeout passed (or a signal came)."""
        ptr = ctypes.c_void_p()
        n = self.lib.nn_recv(self.fd, ctypes.byref(ptr), _NN_MSG, 0)
        if n < 0:
            if ctypes.get_errno() in (_ETIMEDOUT, _EAGAIN, _EINTR):
                return None
            self._fail("nn_recv")
        try:
            return ctypes.string_at(ptr, n)
        finally:
            self.lib.nn_freemsg(ptr)

    def close(self) -> None:
        if self.fd >= 0:
            self.lib.nn_close(self.fd)
            self.fd = -1


@dataclass(frozen=True)
class LearnMessage:
    switch_id: int
    cxt_id: int
    list_id: int
    buffer_id: int
    samples: list[tuple[int, ...]]


def decode_learn(msg: bytes, widths: tuple[int, ...]) -> LearnMessage | None:
    """A ``LEA|`` message's samples, each a tuple of the fields of ``widths`` bits; None
    for another topic. A message whose length does not fit raises ValueError."""
    if len(msg) < LEARN_HEADER.size or msg[:4] != b"LEA|":
        return None
    _, sw, cxt, lst, buf, n = LEARN_HEADER.unpack_from(msg)
    sizes = [(w + 7) // 8 for w in widths]
    step = sum(sizes)
    body = msg[LEARN_HEADER.size:]
    if len(body) != n * step:
        raise ValueError(f"learn message of list {lst}: {len(body)} sample bytes for {n} "
                         f"samples of {step} bytes")
    samples = []
    for k in range(n):
        at, fields = k * step, []
        for size in sizes:
            fields.append(int.from_bytes(body[at:at + size], "big"))
            at += size
        samples.append(tuple(fields))
    return LearnMessage(sw, cxt, lst, buf, samples)
