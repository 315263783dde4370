#!/usr/bin/python3
"""HTTP/2 test client for the scenario tests (Python's h2 from Debian's python3-h2).

Opens one TLS connection with ALPN h2 to 127.0.0.1:PORT and sends requests on it, all at once
(concurrent streams), then prints one line per stream, in the order given:

  stream=<id> status=<code> length=<body bytes> x-cache=<v> content-range=<v> sha=<sha256 prefix>
    fields=<name,name,...>

CA_FILE "-" speaks cleartext HTTP/2 with prior knowledge (h2c, RFC 9113 §3.3) instead of TLS.

Usage: h2_client.py PORT CA_FILE [--head] [--header 'name: value']... [--count N] [--window BYTES]
       [--reset-after BYTES] PATH...
--count N sends each PATH N times; --window sets the client's stream window (a small one makes
the server wait for WINDOW_UPDATEs); --reset-after cancels the first stream (RST_STREAM CANCEL)
once it received that many body bytes. Bounded: gives up after 20 s.
"""
import hashlib
import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings


def main(argv):
    port, ca = int(argv[0]), argv[1]
    args = argv[2:]
    method, headers, count, window, reset_after, paths = "GET", [], 1, None, None, []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--head":
            method = "HEAD"
        elif a == "--header":
            i += 1
            name, value = args[i].split(":", 1)
            headers.append((name.strip().lower(), value.strip()))
        elif a == "--count":
            i += 1
            count = int(args[i])
        elif a == "--window":
            i += 1
            window = int(args[i])
        elif a == "--reset-after":
            i += 1
            reset_after = int(args[i])
        else:
            paths.append(a)
        i += 1

    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    scheme = "http"
    tls = sock
    if ca != "-":
        scheme = "https"
        ctx = ssl.create_default_context(cafile=ca)
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        tls = ctx.wrap_socket(sock, server_hostname="localhost")
        if tls.selected_alpn_protocol() != "h2":
            print("alpn=%s" % tls.selected_alpn_protocol())
            return 2
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    if window is not None:
        conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
    tls.sendall(conn.data_to_send())

    streams = []
    for path in paths:
        for _ in range(count):
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, [(":method", method), (":scheme", scheme),
                                    (":authority", "localhost"), (":path", path)] + headers,
                              end_stream=True)
            streams.append(sid)
    tls.sendall(conn.data_to_send())

    results = {sid: {"status": None, "fields": {}, "names": [], "body": bytearray(), "done": False}
               for sid in streams}
    reset_sid = streams[0] if reset_after is not None else None
    deadline = time.monotonic() + 20
    while not all(r["done"] for r in results.values()) and time.monotonic() < deadline:
        data = tls.recv(65536)
        if not data:
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                r = results[ev.stream_id]
                for name, value in ev.headers:
                    name, value = name.decode(), value.decode()
                    r["names"].append(name)
                    if name == ":status":
                        r["status"] = value
                    r["fields"].setdefault(name, value)
            elif isinstance(ev, h2.events.DataReceived):
                r = results[ev.stream_id]
                r["body"] += ev.data
                # Small windows: give back exactly what was read, as a slow player would.
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                if ev.stream_id == reset_sid and len(r["body"]) >= reset_after:
                    conn.reset_stream(ev.stream_id, error_code=8)  # CANCEL
                    r["done"] = True
                    r["reset"] = True
            elif isinstance(ev, h2.events.StreamEnded):
                results[ev.stream_id]["done"] = True
            elif isinstance(ev, h2.events.StreamReset):
                results[ev.stream_id]["done"] = True
                results[ev.stream_id]["reset"] = True
            elif isinstance(ev, h2.events.ConnectionTerminated):
                deadline = 0
        out = conn.data_to_send()
        if out:
            tls.sendall(out)
    for sid in streams:
        r = results[sid]
        print("stream=%d status=%s length=%d x-cache=%s content-range=%s sha=%s reset=%s fields=%s" % (
            sid, r["status"], len(r["body"]), r["fields"].get("x-cache", "-"),
            r["fields"].get("content-range", "-").replace(" ", "_"),
            hashlib.sha256(bytes(r["body"])).hexdigest()[:16], "yes" if r.get("reset") else "no",
            ",".join(r["names"])))
    return 0 if all(r["done"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
