"""Classic libpcap files of Ethernet frames: a small reader and writer (no dependency).

The format (https://www.tcpdump.org/manpages/pcap-savefile.5.html): a 24-byte global
header (magic, version 2.4, snaplen, link type) and, per record, a 16-byte header
(seconds, micro- or nanoseconds, captured length, original length) and the captured
bytes. Both byte orders and both timestamp resolutions are read; files are written
little-endian with microseconds, link type 1 (Ethernet). pcapng is not read (convert
with ``editcap -F pcap``); a frame cut by the snaplen is read as the bytes captured.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = ["PcapError", "Record", "read_pcap", "PcapWriter", "LINKTYPE_ETHERNET"]

LINKTYPE_ETHERNET = 1
_MAGIC_US = 0xA1B2C3D4
_MAGIC_NS = 0xA1B23C4D
_PCAPNG = 0x0A0D0D0A


class PcapError(ValueError):
    """The file is not a classic pcap of Ethernet frames, or it is cut short."""


@dataclass(frozen=True)
class Record:
    """One captured frame and its timestamp (seconds, nanoseconds)."""

    sec: int
    nsec: int
    data: bytes
    orig_len: int

    @property
    def time(self) -> float:
        return self.sec + self.nsec * 1e-9


def read_pcap(path: str | Path) -> Iterator[Record]:
    """The records of a pcap file, in order (streamed: long captures are fine)."""
    with open(path, "rb") as f:
        head = f.read(24)
        if len(head) < 24:
            raise PcapError(f"{path}: {len(head)} bytes, too short for a pcap header")
        magic_le = struct.unpack("<I", head[:4])[0]
        if magic_le == _PCAPNG:
            raise PcapError(f"{path}: pcapng is not supported; convert it with "
                            f"'editcap -F pcap IN OUT'")
        for order in "<>":
            magic = struct.unpack(order + "I", head[:4])[0]
            if magic in (_MAGIC_US, _MAGIC_NS):
                break
        else:
            raise PcapError(f"{path}: not a pcap file (magic 0x{magic_le:08x})")
        scale = 1000 if magic == _MAGIC_US else 1
        _, _, _, _, _, linktype = struct.unpack(order + "HHiIII", head[4:])
        if linktype & 0xFFFF != LINKTYPE_ETHERNET:
            raise PcapError(f"{path}: link type {linktype & 0xFFFF}, expected "
                            f"{LINKTYPE_ETHERNET} (Ethernet)")
        rec = struct.Struct(order + "IIII")
        n = 0
        while True:
            h = f.read(16)
            if not h:
                return
            if len(h) < 16:
                raise PcapError(f"{path}: record {n} header cut short")
            sec, frac, incl, orig = rec.unpack(h)
            data = f.read(incl)
            if len(data) < incl:
                raise PcapError(f"{path}: record {n} has {len(data)} of {incl} bytes")
            yield Record(sec, frac * scale, data, orig)
            n += 1


class PcapWriter:
    """Write Ethernet frames to a pcap file (little-endian, microseconds)."""

    def __init__(self, path: str | Path, snaplen: int = 65535):
        self.path = Path(path)
        self._f: BinaryIO = open(self.path, "wb")
        self._f.write(struct.pack("<IHHiIII", _MAGIC_US, 2, 4, 0, 0, snaplen,
                                  LINKTYPE_ETHERNET))
        self.count = 0

    def write(self, data: bytes, sec: int = 0, nsec: int = 0,
              orig_len: int | None = None) -> None:
        """Append one frame with its timestamp (nanoseconds rounded down to us)."""
        self._f.write(struct.pack("<IIII", sec, nsec // 1000, len(data),
                                  len(data) if orig_len is None else orig_len))
        self._f.write(data)
        self.count += 1

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
