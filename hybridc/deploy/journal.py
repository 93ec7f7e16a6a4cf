"""The outputs a pipeline run has received so far, appended to a file as they arrive, so
that a run stopped by a failed stage keeps them and `--resume` sends only what is missing.

One record per output: index (uint64), length (uint32), crc32 (uint32), then the output
as .npy bytes. A record cut short by a crash fails its length or crc and ends the read.
"""

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import InputError

RECORD = struct.Struct("<QII")
MAGIC = b"hybridc-journal/1\n"


def path_for(output) -> Path:
    output = Path(output)
    return output.with_name(f".{output.name}.hybridc-journal")


class Journal:
    def __init__(self, path: Path, input_digest: str, count: int, resume: bool, build_digest: str = "",
                 backend: str = ""):
        """The journal's identity is the input, the sample count, the build (its manifest's
        sha256) and the backend: outputs of another model or runtime are never mixed in."""
        self.path = Path(path)
        self.outputs = {}
        identity = json.dumps({"input_sha256": input_digest, "samples": count, "manifest_sha256": build_digest,
                               "backend": backend}).encode() + b"\n"
        if self.path.exists():
            if not resume:
                raise InputError(f"{self.path} holds the outputs of an interrupted run to this output file. Pass "
                                 "--resume to continue it, or delete the file to start again.")
            self.outputs = self._read(identity)
            self.file = open(self.path, "ab")
        else:
            self.file = open(self.path, "wb")
            self.file.write(MAGIC + identity)
            self.file.flush()

    def _read(self, identity: bytes) -> dict:
        data = self.path.read_bytes()
        if not data.startswith(MAGIC + identity):
            raise InputError(f"{self.path} was written for another input file, sample count, build or backend; "
                             "--resume needs the same --input, build and --backend. Delete it to start again.")
        outputs, at = {}, len(MAGIC) + len(identity)
        while at + RECORD.size <= len(data):
            index, length, crc = RECORD.unpack_from(data, at)
            body = data[at + RECORD.size: at + RECORD.size + length]
            if len(body) != length or zlib.crc32(body) != crc:
                break  # the tail a crash cut short
            outputs[index] = np.load(io.BytesIO(body), allow_pickle=False)
            at += RECORD.size + length
        with open(self.path, "r+b") as f:  # drop a torn tail so appends follow whole records
            f.truncate(at)
        return outputs

    def add(self, index: int, output: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.save(buffer, output, allow_pickle=False)
        body = buffer.getvalue()
        self.file.write(RECORD.pack(index, len(body), zlib.crc32(body)) + body)
        self.file.flush()
        self.outputs[index] = output

    def close(self) -> None:
        self.file.close()

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
