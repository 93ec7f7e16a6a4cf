"""A hop's recovery from a receiver that dies and comes back, on real ZeroMQ sockets: the
sender resends what was never answered (hop.Sender.resend_overdue), the new receiver on the
same address gets the very frame, and its acknowledgement settles it."""

import time

import numpy as np

from hybridc.deploy import hop
from hybridc.deploy import wire as w
from hybridc.deploy.pipeline import free_port
from hybridc.errors import LinkError


def test_a_receiver_that_dies_and_comes_back_gets_the_unanswered_frame():
    import zmq

    context = zmq.Context()
    address = f"127.0.0.1:{free_port('127.0.0.1')}"
    try:
        first, _ = hop.receiver(context, address, window=4, max_frame=1 << 16)
        sender = hop.Sender(context, address, window=4, resend_after=0.3)
        frame = w.encode(1, np.arange(6, dtype=np.float32).reshape(2, 3), 0)
        sender.send(1, frame)
        assert first.poll(10_000)
        assert first.recv_multipart()[-1] == frame
        first.close()  # dies before answering
        assert sender.resend_overdue() == 0, "nothing is overdue before resend_after"
        deadline = time.monotonic() + 30
        while True:  # ZeroMQ releases the port in its I/O thread, shortly after close
            try:
                again, _ = hop.receiver(context, address, window=4, max_frame=1 << 16)
                break
            except LinkError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        while not again.poll(100):
            assert time.monotonic() < deadline, "the unanswered frame was never sent again"
            sender.resend_overdue()
        peer, got = again.recv_multipart()
        assert got == frame and sender.resends >= 1 and 1 in sender.unacked
        hop.reply(again, peer, w.ACK, 1)
        deadline = time.monotonic() + 10
        done = []
        while not done:
            assert time.monotonic() < deadline
            sender.socket.poll(100)
            done = sender.receive_replies()
        assert done == [1] and not sender.unacked and sender.has_credit()
        time.sleep(0.4)
        assert sender.resend_overdue() == 0, "an acknowledged frame is never sent again"
        sender.close()
        again.close()
    finally:
        context.destroy(linger=0)
