"""SYN-authentication cookies: HalfSipHash-2-4 over the connection's addresses.

The data plane answers the first SYN of an unverified source with a SYN-ACK whose
acknowledgement number is a cookie; the client's TCP, in SYN-SENT, finds it
unacceptable and answers with an RST whose sequence number is that cookie (RFC 9293,
3.10.7.3). An RST that carries a valid cookie proves that its sender receives at its
source address, and the source becomes *verified* (docs/lifecycle.md).

The cookie is a keyed pseudo-random function: HalfSipHash-2-4 (Aumasson and
Bernstein; the function SmartCookie, USENIX Security 2024, runs on Tofino) with a
64-bit key and 32-bit output, over three 32-bit words (the little-endian words of the
12-byte message ``src_ip | dst_ip | src_port << 16 | dst_port``)::

    h      = HalfSipHash-2-4(auth_key[e], m0 = src_ip, m1 = dst_ip,
                             m2 = src_port << 16 | dst_port)
    cookie = (h & 0xFFFFFFFE) | e                  e = the key epoch's parity bit

The key is one of two (``auth_key[0]``, ``auth_key[1]``); the low bit of a cookie names
the key that made it, so checking an RST costs one hash, like making a cookie. A SYN-ACK
whose acknowledgement number happened to equal ``isn + 1`` would be *accepted* by the
client, so such a challenge carries ``cookie ^ 0x80000000`` instead, and a check accepts
both values (:func:`challenge_ack`, :func:`cookie_ok`).
"""

from __future__ import annotations

__all__ = ["halfsiphash24", "halfsiphash24_words", "cookie", "challenge_ack", "cookie_ok",
           "COOKIE_FLIP", "MASK32"]

MASK32 = 0xFFFFFFFF
#: XORed into a cookie that equals the client's ``isn + 1`` (see the module docstring).
COOKIE_FLIP = 0x80000000


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (32 - b))) & MASK32


def _sipround(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
    v0 = (v0 + v1) & MASK32
    v1 = _rotl(v1, 5) ^ v0
    v0 = _rotl(v0, 16)
    v2 = (v2 + v3) & MASK32
    v3 = _rotl(v3, 8) ^ v2
    v0 = (v0 + v3) & MASK32
    v3 = _rotl(v3, 7) ^ v0
    v2 = (v2 + v1) & MASK32
    v1 = _rotl(v1, 13) ^ v2
    v2 = _rotl(v2, 16)
    return v0, v1, v2, v3


def halfsiphash24_words(key: int, words: list[int] | tuple[int, ...], length: int) -> int:
    """HalfSipHash-2-4 with 32-bit output of a message given as little-endian 32-bit
    words; ``length`` is the message length in bytes, the last word holds the tail
    bytes (at most 3; ``len(words) == length // 4 + 1``). ``key`` is the 64-bit key,
    bytes ``key.to_bytes(8, "little")``."""
    k0, k1 = key & MASK32, (key >> 32) & MASK32
    v0, v1, v2, v3 = k0, k1, 0x6C796765 ^ k0, 0x74656462 ^ k1
    full = length // 4
    if len(words) != full + 1:
        raise ValueError(f"length {length}: expected {full + 1} words, got {len(words)}")
    for m in words[:full]:
        v3 ^= m
        for _ in range(2):
            v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
        v0 ^= m
    b = ((length & 0xFF) << 24) | (words[full] & 0xFFFFFF)
    v3 ^= b
    for _ in range(2):
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    v0 ^= b
    v2 ^= 0xFF
    for _ in range(4):
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    return v1 ^ v3


def halfsiphash24(key: bytes, msg: bytes) -> int:
    """HalfSipHash-2-4, 32-bit output, of a byte string (the reference definition;
    its result as 4 little-endian bytes is the reference implementation's output)."""
    if len(key) != 8:
        raise ValueError(f"HalfSipHash key: expected 8 bytes, got {len(key)}")
    full = len(msg) // 4
    words = [int.from_bytes(msg[4 * i:4 * i + 4], "little") for i in range(full)]
    words.append(int.from_bytes(msg[4 * full:], "little"))
    return halfsiphash24_words(int.from_bytes(key, "little"), words, len(msg))


def cookie(key: int, epoch: int, src_ip: int, dst_ip: int, src_port: int,
           dst_port: int) -> int:
    """The 32-bit cookie of a connection under ``key`` (the key of epoch parity
    ``epoch``): the hash with its low bit replaced by ``epoch``."""
    h = halfsiphash24_words(key, (src_ip, dst_ip, (src_port << 16) | dst_port, 0), 12)
    return (h & ~1 & MASK32) | (epoch & 1)


def challenge_ack(keys: tuple[int, int], epoch: int, src_ip: int, dst_ip: int,
                  src_port: int, dst_port: int, seq: int) -> int:
    """Acknowledgement number of the challenge SYN-ACK answering a SYN with sequence
    number ``seq``: the cookie, or ``cookie ^ COOKIE_FLIP`` when the cookie equals
    ``seq + 1`` (which the client would accept)."""
    c = cookie(keys[epoch & 1], epoch & 1, src_ip, dst_ip, src_port, dst_port)
    return c ^ COOKIE_FLIP if c == (seq + 1) & MASK32 else c


def cookie_ok(keys: tuple[int, int], src_ip: int, dst_ip: int, src_port: int,
              dst_port: int, seq: int) -> bool:
    """Whether an RST's sequence number is a cookie of the connection under the key
    its low bit names (either of the two values :func:`challenge_ack` can send)."""
    e = seq & 1
    c = cookie(keys[e], e, src_ip, dst_ip, src_port, dst_port)
    return seq in (c, c ^ COOKIE_FLIP)
