"""Turn a Linux interface's segmentation and checksum offloads off (SIOCETHTOOL).

A software switch on AF_PACKET sees what the kernel hands the interface: with TSO/GSO a
sender's 64 KB super-frames, with TX checksum offload frames whose TCP/UDP checksum is
only the pseudo-header sum, and with GRO merged frames. The model switch rewrites and
forwards frames as they are on the wire, so its ports -- and, on veth pairs, the far
ends -- must have these off (``ethtool -K IFACE tso off gso off gro off tx off``). This
is the legacy ethtool ioctl interface, which needs no ethtool binary.
"""

from __future__ import annotations

import fcntl
import socket
import struct

__all__ = ["disable_offloads", "offloads", "OFFLOADS"]

SIOCETHTOOL = 0x8946
#: (name, ethtool get command, set command) of the legacy ETHTOOL_G*/S* value commands
OFFLOADS = (("tx-checksum", 0x16, 0x17), ("scatter-gather", 0x18, 0x19),
            ("tso", 0x1E, 0x1F), ("gso", 0x23, 0x24), ("gro", 0x2B, 0x2C))


def _ethtool(s: socket.socket, iface: str, cmd: int, data: int = 0) -> int:
    buf = bytearray(struct.pack("II", cmd, data))
    ifreq = struct.pack("16sP", iface.encode()[:15], _addr(buf))
    try:
        fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifreq)
    except OSError as e:
        if e.errno == 19:  # ENODEV
            raise OSError(e.errno, f"interface {iface!r} does not exist") from None
        raise
    return struct.unpack("II", bytes(buf))[1]


def offloads(iface: str) -> dict[str, bool]:
    """The state of each offload of :data:`OFFLOADS` on ``iface`` (missing: not
    supported by the driver)."""
    out = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for name, get, _ in OFFLOADS:
            try:
                out[name] = bool(_ethtool(s, iface, get))
            except OSError as e:
                if "does not exist" in str(e):
                    raise
    return out


def disable_offloads(iface: str) -> list[str]:
    """Switch the offloads of :data:`OFFLOADS` off on ``iface``; returns the names
    the driver refused (a driver without the feature answers EOPNOTSUPP)."""
    refused = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for name, _, cmd in OFFLOADS:
            try:
                _ethtool(s, iface, cmd, 0)
            except OSError as e:
                if "does not exist" in str(e):
                    raise
                refused.append(name)
    return refused


def _addr(buf: bytearray) -> int:
    """Address of ``buf``'s storage (ifreq.ifr_data points at the ethtool_value)."""
    import ctypes

    return ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))
