#!/usr/bin/env python3
"""Open N idle client connections to HOST:PORT and hold them.

usage: idle_conns.py HOST PORT N MODE
  MODE connect : connect and send nothing (just hold the socket)
  MODE request : send one keep-alive "GET /small" request, read the whole
                 response, then keep the connection idle (the realistic
                 keep-alive case)

Protocol on stdout/stdin (line based, driven by bench.py):
  -> "OPENED <ok> <failed> <seconds>"   once all connections are set up
  <- "check"                            -> "ALIVE <n>"  (sockets neither closed
                                            nor sent anything unexpected)
  <- "exit" (or EOF)                    closes everything and exits 0
Stdlib only. Connects in bounded batches so listen backlogs do not overflow.
"""
import errno
import os
import resource
import select
import selectors
import socket
import sys
import time

BATCH = 200
CONNECT_TIMEOUT = 10.0
REQUEST = b"GET /small HTTP/1.1\r\nHost: bench.local\r\nUser-Agent: idle-conns\r\n\r\n"


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, n + 64) if hard != resource.RLIM_INFINITY else n + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def response_complete(buf):
    """True when buf holds a whole HTTP response with a Content-Length body."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    head = buf[:end].decode("latin-1").lower().split("\r\n")
    if not head[0].startswith("http/1.1 2"):
        raise ValueError("bad status: %r" % head[0])
    length = 0
    for line in head[1:]:
        if line.startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    return len(buf) - (end + 4) >= length


def open_batch(host, port, count, mode):
    """Connect `count` sockets concurrently; returns (ok_sockets, failures)."""
    sel = selectors.DefaultSelector()
    state = {}
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        rc = s.connect_ex((host, port))
        if rc not in (0, errno.EINPROGRESS):
            s.close()
            continue
        state[s] = {"phase": "connect", "buf": b""}
        sel.register(s, selectors.EVENT_WRITE)
    ok, failed = [], count - len(state)
    deadline = time.monotonic() + CONNECT_TIMEOUT
    while state and time.monotonic() < deadline:
        for key, ev in sel.select(timeout=0.5):
            s = key.fileobj
            st = state[s]
            try:
                if st["phase"] == "connect":
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, os.strerror(err))
                    if mode == "connect":
                        sel.unregister(s)
                        del state[s]
                        ok.append(s)
                        continue
                    s.sendall(REQUEST)
                    st["phase"] = "read"
                    sel.modify(s, selectors.EVENT_READ)
                else:
                    data = s.recv(65536)
                    if not data:
                        raise OSError("closed before response")
                    st["buf"] += data
                    if response_complete(st["buf"]):
                        sel.unregister(s)
                        del state[s]
                        ok.append(s)
            except (OSError, ValueError):
                sel.unregister(s)
                del state[s]
                s.close()
                failed += 1
    for s in list(state):
        sel.unregister(s)
        s.close()
        failed += 1
    sel.close()
    return ok, failed


def count_alive(socks):
    """A held socket is alive when it is not readable (no EOF, no data)."""
    alive = 0
    for i in range(0, len(socks), 512):
        chunk = socks[i:i + 512]
        p = select.poll()
        for s in chunk:
            p.register(s, select.POLLIN | select.POLLERR | select.POLLHUP)
        bad = {fd for fd, _ in p.poll(0)}
        alive += sum(1 for s in chunk if s.fileno() not in bad)
    return alive


def main():
    host, port, n, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    if mode not in ("connect", "request"):
        sys.exit("mode must be connect or request")
    raise_nofile(n)
    t0 = time.monotonic()
    held, failed = [], 0
    while len(held) + failed < n:
        ok, bad = open_batch(host, port, min(BATCH, n - len(held) - failed), mode)
        held += ok
        failed += bad
    print("OPENED %d %d %.3f" % (len(held), failed, time.monotonic() - t0), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "check":
            print("ALIVE %d" % count_alive(held), flush=True)
        elif cmd == "exit":
            break
    for s in held:
        s.close()


if __name__ == "__main__":
    main()
