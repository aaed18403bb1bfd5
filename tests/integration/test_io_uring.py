#!/usr/bin/env python3
"""--io-uring: the workers batch socket reads and writes through io_uring where the
kernel allows it (auto, the default), and fall back to plain syscalls where it does
not, as under the RuntimeDefault seccomp profile of containerd >= 2.0 and Docker >= 25.
The refusal is reproduced with tests/tools/deny_io_uring.cpp, a seccomp filter on
this process tree only."""

import ctypes
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import IntegrationTest, connect, echo_roundtrip, free_port, run_proxy_cli  # noqa: E402
from http_harness import HttpClient  # noqa: E402

NR_IO_URING_SETUP = 425  # the same number on every architecture


def kernel_allows_io_uring():
    """Whether this process may set up a ring (the proxy inherits the same rules)."""
    libc = ctypes.CDLL(None, use_errno=True)
    params = ctypes.create_string_buffer(120)  # struct io_uring_params
    fd = libc.syscall(NR_IO_URING_SETUP, 4, params)
    if fd < 0:
        return False
    os.close(fd)
    return True


def deny_bin():
    return os.environ.get("DRAINPROXY_DENY_IO_URING_BIN", "")


class IoUringTest(IntegrationTest):

    def deny_wrapper(self):
        if not os.access(deny_bin(), os.X_OK):
            self.skipTest("deny-io-uring not built (set DRAINPROXY_DENY_IO_URING_BIN)")
        return [deny_bin()]

    def assert_serves(self, wrapper=(), *flags):
        """TCP mode echoes small and large messages; HTTP mode answers keep-alive
        requests and a 1 MiB body, through the same I/O path."""
        upstream = self.start_echo()
        tcp = self.start_proxy(upstream.port, *self.FAST, "--io-uring", *flags, wrapper=wrapper)
        tcp.wait_ready(timeout=3.0)
        s = self.connect_proxy(tcp)
        for size in (1, 1000, 256 * 1024):
            data = bytes((i * 7 + size) % 251 for i in range(size))
            self.assertEqual(echo_roundtrip(s, data), data, "%d bytes through tcp mode" % size)

        app = self.start_demo(name="app")
        http = self.start_http_proxy(app.port, *self.FAST, "--io-uring", *flags, wrapper=wrapper)
        http.wait_ready(timeout=3.0)
        c = HttpClient(http.listen_port)
        self.addCleanup(c.close)
        for i in range(20):
            c.send(b"GET / HTTP/1.1\r\nHost: t\r\nX-Request: %d\r\n\r\n" % i)
            r = c.read_response()
            self.assertEqual(r.status, 200, "request %d" % i)
        body = bytes(i % 251 for i in range(1 << 20))
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, body, "1 MiB echoed through http mode")
        return tcp, http

    def test_auto_batches_where_the_kernel_allows_it(self):
        allowed = kernel_allows_io_uring()
        tcp, http = self.assert_serves((), "auto")
        for dp in (tcp, http):
            self.assertEqual(dp.status()["io"], "io_uring" if allowed else "syscalls",
                             "io_uring is %s here" % ("allowed" if allowed else "refused"))
            self.assertIn("io %s" % ("io_uring" if allowed else "syscalls"), dp.stderr_text())

    def test_auto_falls_back_to_syscalls_when_seccomp_refuses_io_uring(self):
        tcp, http = self.assert_serves(self.deny_wrapper(), "auto")
        for dp in (tcp, http):
            self.assertEqual(dp.status()["io"], "syscalls")
            log = dp.stderr_text()
            self.assertIn("io_uring is unavailable", log)
            self.assertIn("Operation not permitted", log, "the log names the kernel's answer")

    def test_on_refuses_to_start_when_io_uring_is_refused(self):
        args = ["--listen", "127.0.0.1:%d" % free_port(), "--admin", "127.0.0.1:%d" % free_port(),
                "--upstream", "127.0.0.1:%d" % free_port(), "--io-uring", "on"]
        res = run_proxy_cli(args, wrapper=self.deny_wrapper())
        self.assertEqual(res.returncode, 2, res.stderr[-2000:])
        self.assertIn("--io-uring", res.stderr)
        self.assertIn("Operation not permitted", res.stderr)

    def test_on_starts_where_the_kernel_allows_it(self):
        if not kernel_allows_io_uring():
            self.skipTest("io_uring is refused here")
        tcp, http = self.assert_serves((), "on")
        self.assertEqual(tcp.status()["io"], "io_uring")
        self.assertEqual(http.status()["io"], "io_uring")

    def test_off_uses_plain_syscalls(self):
        tcp, http = self.assert_serves((), "off")
        for dp in (tcp, http):
            self.assertEqual(dp.status()["io"], "syscalls")
            self.assertNotIn("io_uring is unavailable", dp.stderr_text(), "off is a choice, not a failure")


if __name__ == "__main__":
    unittest.main(verbosity=2)
