"""The wire format: one ZeroMQ frame per message, a fixed header then the payload.

    header  magic "HYBC", version, kind, port (which input of the receiving stage the
            tensor is for: 0 for its first), sequence number, crc32, bits, dtype, ndim,
            payload length (little-endian), then ndim uint32 dimensions
    payload DATA: the tensor's values, either packed at `bits` bits each (unsigned
            integers: 1 bit per spike, ceil(log2(I+1)) bits per accumulator count, an
            Encoder's graded spikes; or signed two's-complement integers: sigma-delta
            graded values x their scale) or raw float32; ACK/NACK/STATS: UTF-8 text

Every field is checked on receipt (magic, version, kind, dtype, shape against the payload
length, the payload length against the frame, the whole frame against a size limit, and
crc32 over everything but the crc field): a bad frame raises LinkError and is refused,
never half-read.
"""

import struct
import zlib
from dataclasses import dataclass
from math import prod
from typing import Optional

import numpy as np

from ..errors import LinkError

MAGIC = b"HYBC"
VERSION = 1
HEADER = struct.Struct("<4sBBHQIBBBxI")
CRC_AT = 16  # byte offset of the crc32 field, which the checksum skips
MAX_NDIM = 8
TEXT_LIMIT = 1 << 16  # ACK/NACK/STATS messages: a few hundred bytes of text
DATA, ACK, NACK, STATS = 1, 2, 3, 4
KIND_NAMES = {DATA: "data", ACK: "ack", NACK: "nack", STATS: "stats"}
RAW_FLOAT32, PACKED_UINT, TEXT, PACKED_INT = 1, 2, 3, 4
PACKED = (PACKED_UINT, PACKED_INT)
MAX_PORTS = 64  # inputs of one stage (the manifest allows as many)


@dataclass
class Message:
    kind: int
    seq: int
    shape: tuple
    bits: int  # 0 for raw float32 and text
    dtype: int
    payload: bytes
    size: int  # bytes of the whole frame, as it crossed the wire
    port: int = 0  # the receiving stage's input index
    entries: Optional[list] = None  # STATS: the measurements, once a receiver has validated them

    def array(self) -> np.ndarray:
        """The values as float32 in their shape (counts, spikes and graded integers are exact)."""
        count = prod(self.shape)
        if self.dtype == RAW_FLOAT32:
            return np.frombuffer(self.payload, dtype="<f4").reshape(self.shape).astype(np.float32)
        values = unpack(self.payload, count, self.bits)
        if self.dtype == PACKED_INT:  # two's complement at `bits` bits
            values = values.astype(np.int64) - ((values >> (self.bits - 1)) & 1).astype(np.int64) * (1 << self.bits)
        return values.reshape(self.shape).astype(np.float32)

    def text(self) -> str:
        return self.payload.decode("utf-8", errors="replace")


def payload_bytes(shape, bits: int, dtype: int) -> int:
    """Bytes a DATA payload of `shape` takes: packed at `bits` bits, or 4 per float32."""
    count = prod(shape)
    return count * 4 if dtype == RAW_FLOAT32 else -(-count * bits // 8)  # packed (unsigned or signed)


def frame_bytes(shape, bits: int, dtype: int) -> int:
    """Bytes of the whole DATA frame (header, shape, payload)."""
    return HEADER.size + 4 * len(shape) + payload_bytes(shape, bits, dtype)


def pack(values: np.ndarray, bits: int) -> bytes:
    """Integers packed at `bits` bits each, least significant bit first: unsigned (< 2**bits),
    or signed ones as their two's complement at `bits` bits."""
    flat = np.asarray(values).reshape(-1)
    if bits == 1:
        return np.packbits(flat.astype(bool), bitorder="little").tobytes()
    ints = (flat.astype(np.int64) & ((1 << bits) - 1)).astype(np.uint32)
    planes = (ints[:, None] >> np.arange(bits, dtype=np.uint32)) & 1
    return np.packbits(planes.astype(np.uint8).reshape(-1), bitorder="little").tobytes()


def unpack(payload: bytes, count: int, bits: int) -> np.ndarray:
    raw = np.frombuffer(payload, dtype=np.uint8)
    planes = np.unpackbits(raw, count=count * bits, bitorder="little")
    if bits == 1:
        return planes
    weights = (1 << np.arange(bits, dtype=np.uint32))
    return (planes.reshape(count, bits).astype(np.uint32) * weights).sum(axis=1)


def check_packable(values: np.ndarray, bits: int, signed: bool = False) -> None:
    """Values a packed link can carry exactly: integers in [0, 2**bits), or with `signed`
    in [-2**(bits-1), 2**(bits-1))."""
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if values.size and (values.min() < low or values.max() > high or not np.array_equal(values, np.round(values))):
        what = "graded-value" if signed else "spike" if bits == 1 else "count"
        raise LinkError(f"Values in [{values.min()}, {values.max()}] cannot travel as {bits}-bit "
                        f"{'signed' if signed else 'unsigned'} integers; a {what} link carries integers "
                        f"{low}..{high} only.")


def _frame(kind: int, seq: int, shape, bits: int, dtype: int, payload: bytes, port: int = 0) -> bytes:
    head = HEADER.pack(MAGIC, VERSION, kind, port, seq, 0, bits, dtype, len(shape), len(payload))
    dims = struct.pack(f"<{len(shape)}I", *shape)
    crc = zlib.crc32(payload, zlib.crc32(dims, zlib.crc32(head[CRC_AT + 4:], zlib.crc32(head[:CRC_AT]))))
    return head[:CRC_AT] + struct.pack("<I", crc) + head[CRC_AT + 4:] + dims + payload


def encode(seq: int, values: np.ndarray, bits: int, signed: bool = False, port: int = 0) -> bytes:
    """A DATA frame for one sample (no batch axis) for input `port` of the receiver: packed at
    `bits` bits (two's complement with `signed`), or float32 when bits == 0."""
    values = np.asarray(values)
    if bits:
        check_packable(values, bits, signed)
        return _frame(DATA, seq, values.shape, bits, PACKED_INT if signed else PACKED_UINT, pack(values, bits), port)
    return _frame(DATA, seq, values.shape, 0, RAW_FLOAT32, values.astype("<f4").tobytes(), port)


def encode_text(kind: int, seq: int, text: str, port: int = 0) -> bytes:
    return _frame(kind, seq, (), 0, TEXT, text.encode("utf-8"), port)


def decode(frame: bytes, max_bytes: int = 1 << 30) -> Message:
    """The message in `frame`, or LinkError saying what is wrong with it."""
    size = len(frame)
    if size > max_bytes:
        raise LinkError(f"Message of {size:,} bytes refused: this link takes at most {max_bytes:,}.")
    if size < HEADER.size:
        raise LinkError(f"Truncated message: {size} bytes, shorter than the {HEADER.size}-byte header.")
    magic, version, kind, port, seq, crc, bits, dtype, ndim, length = HEADER.unpack_from(frame)
    if magic != MAGIC:
        raise LinkError(f"Not a hybridc message (starts with {magic!r}, not {MAGIC!r}).")
    if version != VERSION:
        raise LinkError(f"Message of wire version {version}; this hybridc speaks version {VERSION}. "
                        "Run the same hybridc version on every device.")
    if kind not in KIND_NAMES or dtype not in (RAW_FLOAT32, PACKED_UINT, TEXT, PACKED_INT) or ndim > MAX_NDIM:
        raise LinkError(f"Message {seq} has an unknown kind ({kind}), dtype ({dtype}) or rank ({ndim}).")
    if port >= MAX_PORTS:
        raise LinkError(f"Message {seq} is for input {port}; a stage has at most {MAX_PORTS} inputs.")
    if dtype in PACKED and not 1 <= bits <= 32 or dtype == PACKED_INT and bits < 2:
        raise LinkError(f"Message {seq} packs values at {bits} bits; 1 to 32 are valid.")
    start = HEADER.size + 4 * ndim
    if size != start + length:
        raise LinkError(f"Message {seq} is {size} bytes but its header announces {start + length} "
                        "(truncated or padded in transit).")
    shape = struct.unpack_from(f"<{ndim}I", frame, HEADER.size)
    if dtype != TEXT and length != payload_bytes(shape, bits, dtype):
        raise LinkError(f"Message {seq}: a payload of {length} bytes does not hold shape {shape} at "
                        f"{bits or 32} bits.")
    mv = memoryview(frame)
    expected = zlib.crc32(mv[CRC_AT + 4:], zlib.crc32(mv[:CRC_AT]))
    if crc != expected:
        raise LinkError(f"Message {seq} is corrupted: crc32 {crc:08x}, computed {expected:08x}.")
    return Message(kind, seq, tuple(shape), bits, dtype, bytes(mv[start:]), size, port)
