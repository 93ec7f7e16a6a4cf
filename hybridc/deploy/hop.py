"""One hop of a link: a DEALER that sends DATA frames and keeps each until the receiver
acknowledges it, and the receiving ROUTER's bounds.

Credit-based flow control: at most `window` frames are unacknowledged on a hop, and
ZeroMQ's high-water marks are set to the same window, so a slow stage pushes back on its
producer instead of queueing without bound. A NACK (the receiver refused a frame as
malformed, truncated or corrupted) makes the sender resend its stored copy, up to
`max_resends` times. A frame with no answer for `resend_after` seconds is sent again (a
receiver that died and came back on the same address gets it; one that has it already
acknowledges it again without running it twice), and ZeroMQ's heartbeats drop a connection
whose peer stopped answering, so the socket reconnects instead of writing into the void.
"""

import time
from collections import OrderedDict

from ..errors import LinkError
from . import wire as w

LINGER_MS = 0
HEARTBEAT_MS, HEARTBEAT_TIMEOUT_MS = 1_000, 5_000


def _heartbeats(socket) -> None:
    import zmq

    socket.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_MS)
    socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    socket.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TIMEOUT_MS)


def tcp(address: str) -> str:
    return address if address.startswith("tcp://") else f"tcp://{address}"


def receiver(context, listen: str, window: int, max_frame: int, secure=None):
    """A bound ROUTER socket; returns (socket, endpoint actually bound). Port 0 picks a free port.
    `secure(socket)`, when given, makes it a CURVE server before it binds (deploy/keys.py)."""
    import zmq

    socket = context.socket(zmq.ROUTER)
    if secure is not None:
        secure(socket)
    socket.setsockopt(zmq.LINGER, LINGER_MS)
    _heartbeats(socket)
    socket.setsockopt(zmq.RCVHWM, max(1, window) * 2)
    # frames far beyond the link's size are dropped by ZeroMQ itself (the peer is disconnected
    # before memory is spent); frames up to this bound reach the decoder, which refuses them
    socket.setsockopt(zmq.MAXMSGSIZE, 4 * max_frame + (1 << 20))
    host, _, port = listen.removeprefix("tcp://").rpartition(":")
    try:
        if port in ("", "0"):
            port = socket.bind_to_random_port(f"tcp://{host or '127.0.0.1'}")
        else:
            socket.bind(f"tcp://{host}:{port}")
    except zmq.ZMQError as exc:
        socket.close()
        raise LinkError(f"Cannot listen on {listen}: {exc}. Choose another port (or 0 for a free one).") from None
    return socket, f"{host or '127.0.0.1'}:{port}"


class Sender:
    """Sends DATA frames on a DEALER socket connected to `address`, holding each until acknowledged."""

    def __init__(self, context, address: str, window: int, max_resends: int = 3, log=None, secure=None,
                 resend_after: float = 30.0):
        """`secure(socket)`, when given, makes it a CURVE client before it connects.
        resend_after: seconds without an answer before a frame is sent again."""
        import zmq

        self.socket = context.socket(zmq.DEALER)
        if secure is not None:
            secure(self.socket)
        self.socket.setsockopt(zmq.LINGER, LINGER_MS)
        _heartbeats(self.socket)
        self.socket.setsockopt(zmq.SNDHWM, max(1, window))
        self.socket.connect(tcp(address))
        self.address = address
        self.window = window
        self.max_resends, self.resend_after = max_resends, resend_after
        self.unacked = OrderedDict()  # seq -> [frame, NACKs so far, when last sent]
        self.resends = 0
        self.log = log or (lambda message: None)

    def has_credit(self) -> bool:
        return len(self.unacked) < self.window

    def send(self, seq: int, frame: bytes, kind: int = w.DATA) -> None:
        self.socket.send(frame, copy=False)
        if kind == w.DATA:
            self.unacked[seq] = [frame, 0, time.monotonic()]

    def receive_replies(self) -> list:
        """Handle every ACK/NACK waiting on the socket; returns the acknowledged sequence numbers."""
        import zmq

        done = []
        while self.socket.poll(0, zmq.POLLIN):
            reply = self.socket.recv()
            try:
                message = w.decode(reply, max_bytes=1 << 16)
            except LinkError as exc:
                self.log(f"refused a reply from {self.address}: {exc}")
                continue
            if message.kind == w.ACK:
                if self.unacked.pop(message.seq, None) is not None:
                    done.append(message.seq)
            elif message.kind == w.NACK and message.seq in self.unacked:
                entry = self.unacked[message.seq]
                entry[1] += 1
                self.resends += 1
                if entry[1] > self.max_resends:
                    raise LinkError(f"{self.address} refused sample {message.seq} {entry[1]} times "
                                    f"({message.text()}); the link corrupts frames.")
                self.log(f"{self.address} refused sample {message.seq} ({message.text()}); resending")
                self.socket.send(entry[0], copy=False)
                entry[2] = time.monotonic()
        return done

    def resend_overdue(self) -> int:
        """Send again every frame unanswered for resend_after seconds; returns how many."""
        import zmq

        now, count = time.monotonic(), 0
        for seq, entry in self.unacked.items():
            if now - entry[2] > self.resend_after:
                try:
                    self.socket.send(entry[0], copy=False, flags=zmq.NOBLOCK)
                except zmq.Again:  # the peer is gone and the queue full: try again next time
                    break
                entry[2] = now
                self.resends += 1
                count += 1
                self.log(f"no answer from {self.address} for sample {seq} in {self.resend_after:g} s; resending")
        return count

    def close(self) -> None:
        self.socket.close()


def reply(socket, peer: bytes, kind: int, seq: int, text: str = "") -> None:
    socket.send_multipart([peer, w.encode_text(kind, seq, text)])


def seq_of(frame: bytes):
    """The sequence number of a frame too broken to decode, if its header is there to read it."""
    if len(frame) >= w.HEADER.size and frame[:4] == w.MAGIC:
        return w.HEADER.unpack_from(frame)[4]
    return None


def port_of(frame: bytes):
    """The input a frame too broken to decode was meant for, if its header is there to read it."""
    if len(frame) >= w.HEADER.size and frame[:4] == w.MAGIC:
        return w.HEADER.unpack_from(frame)[3]
    return None
