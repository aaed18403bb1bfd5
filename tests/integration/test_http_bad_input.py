#!/usr/bin/env python3
"""HTTP mode: malformed, ambiguous and hostile requests; upstream failures.

Cases come from RFC 9112 / RFC 9110 and from published request-smuggling
research (CL.TE, TE.CL, TE.TE obfuscation, obs-fold, bare LF, CL overflow ...).
Every rejected case checks three things:
  1. the status code the proxy answers (with "Connection: close"),
  2. that the proxy closes the connection after the answer (EOF within 3 s),
  3. that nothing reached the app: a Python app records every byte it receives.
Cases the proxy may legitimately normalise must reach the app as exactly one
unambiguous request. Chunked-body errors are only detectable after the head
went upstream: there the app must see an incomplete request (never the
invalid bytes, never a complete request) and then the connection close.
"""

import collections
import os
import select
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Drainproxy, IntegrationTest, free_port  # noqa: E402
from http_harness import HttpClient, RecordingUpstream, TcpServer  # noqa: E402

H = b"Host: a.example\r\n"
MARK = b"SMUGGLED"   # every hostile payload carries it; it must never reach the app
REASON_FOR = {400: "bad_request", 405: "method_not_allowed", 408: "request_timeout",
              413: "payload_too_large", 414: "uri_too_long", 417: "expectation_failed",
              431: "header_too_large", 501: "not_implemented", 502: "bad_gateway",
              503: "overload", 504: "gateway_timeout", 505: "version_not_supported"}
SMUGGLE = b"GET /" + MARK + b" HTTP/1.1\r\nHost: a.example\r\n\r\n"
MAX_BODY = 1024


def post(fields, body=b"", version=b"HTTP/1.1", target=b"/p"):
    return b"POST " + target + b" " + version + b"\r\n" + fields + b"\r\n" + body


def get_with(fields, version=b"HTTP/1.1", target=b"/g"):
    return b"GET " + target + b" " + version + b"\r\n" + fields + b"\r\n"


def chunked(body):
    return post(H + b"Transfer-Encoding: chunked\r\n", body)


# (name, raw request bytes, expected status)  -- nothing may reach the app
REJECT = [
    # --- CL / TE smuggling (RFC 9112 6.1, 6.3; "HTTP Desync Attacks", Kettle 2019)
    ("cl_te", post(H + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLE), 400),
    ("te_cl", post(H + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", b"8\r\n" + MARK + b"\r\n0\r\n\r\n"), 400),
    ("te_xchunked", post(H + b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n" + SMUGGLE), 501),
    ("te_chunked_identity", post(H + b"Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n" + SMUGGLE), 400),
    ("te_identity_chunked", post(H + b"Transfer-Encoding: identity, chunked\r\n", b"0\r\n\r\n" + SMUGGLE), 501),
    ("te_chunked_twice", post(H + b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n" + SMUGGLE), 400),
    ("te_two_fields_not_final", post(H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
                                     b"0\r\n\r\n" + SMUGGLE), 400),
    ("te_on_http10", post(b"Transfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLE, version=b"HTTP/1.0"), 400),
    ("te_http10_with_cl", post(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLE,
                               version=b"HTTP/1.0"), 400),
    ("te_chunked_param", post(H + b"Transfer-Encoding: chunked;q=1\r\n", b"0\r\n\r\n" + SMUGGLE), 400),
    ("te_vertical_tab", post(H + b"Transfer-Encoding:\x0bchunked\r\n", b"0\r\n\r\n" + SMUGGLE), 400),
    ("te_obs_fold", post(H + b"Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n" + SMUGGLE), 400),
    ("te_space_before_colon", post(H + b"Transfer-Encoding : chunked\r\nContent-Length: 5\r\n",
                                   b"0\r\n\r\n" + SMUGGLE), 400),
    ("te_unknown_gzip", post(H + b"Transfer-Encoding: gzip\r\n", b"0\r\n\r\n" + SMUGGLE), 501),
    ("te_empty_element", post(H + b"Transfer-Encoding: ,chunked\r\n", b"0\r\n\r\n" + SMUGGLE), 400),
    ("te_quoted", post(H + b"Transfer-Encoding: \"chunked\"\r\n", b"0\r\n\r\n" + SMUGGLE), 400),
    # --- Content-Length (RFC 9110 8.6, RFC 9112 6.3 (5))
    ("cl_duplicate_differing", post(H + b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello" + MARK), 400),
    ("cl_list_differing", post(H + b"Content-Length: 5, 6\r\n", b"hello" + MARK), 400),
    ("cl_plus_sign", post(H + b"Content-Length: +5\r\n", b"hello" + MARK), 400),
    ("cl_minus", post(H + b"Content-Length: -1\r\n", b"hello" + MARK), 400),
    ("cl_hex", post(H + b"Content-Length: 0x5\r\n", b"hello" + MARK), 400),
    ("cl_inner_space", post(H + b"Content-Length: 1 0\r\n", b"hello" + MARK), 400),
    ("cl_decimal_point", post(H + b"Content-Length: 5.0\r\n", b"hello" + MARK), 400),
    ("cl_overflow_2_64", post(H + b"Content-Length: 18446744073709551616\r\n", b"hello" + MARK), 400),
    ("cl_over_2_63", post(H + b"Content-Length: 9223372036854775808\r\n", b"hello" + MARK), 400),
    ("cl_empty", post(H + b"Content-Length:\r\n", b"hello" + MARK), 400),
    ("cl_empty_list_element", post(H + b"Content-Length: 5,\r\n", b"hello" + MARK), 400),
    ("cl_space_before_colon", post(H + b"Content-Length : 5\r\n", b"hello" + MARK), 400),
    # --- field syntax (RFC 9112 5)
    ("obs_fold", get_with(H + b"X-Foo: a\r\n  " + MARK + b"\r\n"), 400),
    ("obs_fold_first_line", get_with(b" " + MARK + b": x\r\n" + H), 400),
    ("space_before_colon", get_with(H + b"X-" + MARK + b" : a\r\n"), 400),
    ("tab_before_colon", get_with(H + b"X-" + MARK + b"\t: a\r\n"), 400),
    ("nul_in_value", get_with(H + b"X-Foo: a\x00" + MARK + b"\r\n"), 400),
    ("cr_in_value", get_with(H + b"X-Foo: a\r" + MARK + b"\r\n"), 400),
    ("lf_in_value", get_with(H + b"X-Foo: a\n" + MARK + b": b\r\n"), 400),
    ("del_in_value", get_with(H + b"X-Foo: a\x7f" + MARK + b"\r\n"), 400),
    ("field_name_with_space", get_with(H + b"X " + MARK + b": a\r\n"), 400),
    ("field_name_invalid_char", get_with(H + b"X<" + MARK + b">: a\r\n"), 400),
    ("field_name_non_ascii", get_with(H + b"X-\xe9" + MARK + b": a\r\n"), 400),
    ("empty_field_name", get_with(H + b": " + MARK + b"\r\n"), 400),
    ("field_without_colon", get_with(H + b"X-" + MARK + b"\r\n"), 400),
    ("bare_lf_everywhere", b"GET /" + MARK + b" HTTP/1.1\nHost: a.example\n\n", 400),
    ("bare_lf_end_of_head", b"GET /" + MARK + b" HTTP/1.1\r\nHost: a.example\n\n", 400),
    ("bare_cr_line_end", b"GET /" + MARK + b" HTTP/1.1\rHost: a.example\r\n\r\n", 400),
    # --- Host (RFC 9112 3.2)
    ("missing_host", get_with(b"X-" + MARK + b": 1\r\n"), 400),
    ("duplicate_host", get_with(H + b"Host: evil." + MARK + b"\r\n"), 400),
    ("duplicate_host_same", get_with(H + H + b"X-" + MARK + b": 1\r\n"), 400),
    ("invalid_host_space", get_with(b"Host: a " + MARK + b"\r\n"), 400),
    ("invalid_host_userinfo", get_with(b"Host: user@" + MARK + b"\r\n"), 400),
    ("invalid_host_port", get_with(b"Host: " + MARK + b":99999\r\n"), 400),
    ("invalid_host_slash", get_with(b"Host: a/" + MARK + b"\r\n"), 400),
    # --- request line (RFC 9112 3)
    ("http09", b"GET /" + MARK + b"\r\n", 400),
    ("http12", get_with(H, version=b"HTTP/1.2", target=b"/" + MARK), 505),
    ("http20", get_with(H, version=b"HTTP/2.0", target=b"/" + MARK), 505),
    ("http30", get_with(H, version=b"HTTP/3.0", target=b"/" + MARK), 505),
    ("version_lower_case", get_with(H, version=b"http/1.1", target=b"/" + MARK), 400),
    ("version_1_10", get_with(H, version=b"HTTP/1.10", target=b"/" + MARK), 400),
    ("version_garbage", get_with(H, version=b"HTTP/x.y", target=b"/" + MARK), 400),
    ("invalid_method", b"G(T /" + MARK + b" HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("leading_space", b" GET /" + MARK + b" HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("double_space", b"GET  /" + MARK + b" HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("target_with_del", b"GET /a\x7f" + MARK + b" HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("target_with_nul", b"GET /a\x00" + MARK + b" HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("asterisk_with_get", get_with(H + b"X-" + MARK + b": 1\r\n", target=b"*"), 400),
    ("absolute_form_empty_authority", get_with(H, target=b"http:///" + MARK), 400),
    ("target_relative", get_with(H, target=MARK), 400),
    ("tls_client_hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + MARK + b"\r\n\r\n", 400),
    ("target_too_long", get_with(H, target=b"/" + MARK + b"a" * 9000), 414),
    # --- sizes (with the default --max-header-bytes 64KiB)
    ("head_70kib", get_with(H + b"".join(b"X-F%03d: %s\r\n" % (i, MARK + b"v" * 690) for i in range(100))), 431),
    ("fields_101", get_with(H + b"".join(b"X-" + MARK + b"%d: v\r\n" % i for i in range(100))), 431),
    ("body_over_max_cl", post(H + b"Content-Length: %d\r\n" % (MAX_BODY + 1), MARK * 129), 413),
    # --- Connection naming framing fields; methods; expectations
    ("connection_names_content_length", post(H + b"Connection: Content-Length\r\nContent-Length: 8\r\n", MARK), 400),
    ("connection_names_transfer_encoding",
     post(H + b"Connection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLE), 400),
    ("connection_names_host", get_with(H + b"Connection: keep-alive, host\r\nX-" + MARK + b": 1\r\n"), 400),
    ("connection_invalid_token", get_with(H + b"Connection: a b\r\nX-" + MARK + b": 1\r\n"), 400),
    ("connect_method", b"CONNECT " + MARK + b".example:443 HTTP/1.1\r\nHost: " + MARK + b".example:443\r\n\r\n", 405),
    ("expect_unknown", post(H + b"Expect: foo\r\nContent-Length: 8\r\n", MARK), 417),
    ("expect_100_plus_unknown", post(H + b"Expect: 100-continue, bar\r\nContent-Length: 8\r\n", MARK), 417),
]

# Chunked-body errors: detected after the head went upstream. (name, body bytes after the head, status)
BAD_CHUNKED = [
    ("chunk_size_not_hex", b"zz\r\n" + MARK + b"\r\n0\r\n\r\n", 400),
    ("chunk_size_negative", b"-8\r\n" + MARK + b"\r\n0\r\n\r\n", 400),
    ("chunk_size_0x_prefix", b"0x8\r\n" + MARK + b"\r\n0\r\n\r\n", 400),
    ("chunk_size_overflow", b"1" + b"0" * 16 + b"\r\n" + MARK + b"\r\n0\r\n\r\n", 400),
    ("chunk_size_missing", b"\r\n" + MARK + b"\r\n0\r\n\r\n", 400),
    ("chunk_size_space_garbage", b"8 x\r\n" + MARK + b"\r\n0\r\n\r\n", 400),
    ("chunk_ext_no_name", b"8;=x\r\n" + MARK + b"\r\n0\r\n\r\n", 400),
    ("chunk_ext_ctl_in_quoted", b"8;a=\"x\x01\"\r\n" + MARK + b"\r\n0\r\n\r\n", 400),
    ("chunk_ext_bare_lf", b"8;a=b\n" + MARK + b"\r\n0\r\n\r\n", 400),
    ("chunked_bare_lf", b"8\n" + MARK + b"\n0\n\n", 400),
    ("chunk_data_too_long", b"3\r\nabc" + MARK + b"\r\n0\r\n\r\n", 400),
    ("chunk_data_bare_lf_end", b"3\r\nabc\n8\r\n" + MARK + b"\r\n0\r\n\r\n", 400),
    ("chunk_trailer_content_length", b"0\r\nContent-Length: 8\r\n\r\n" + MARK, 400),
    ("chunk_trailer_transfer_encoding", b"0\r\nTransfer-Encoding: chunked\r\n\r\n" + MARK, 400),
    ("chunk_trailer_obs_fold", b"0\r\nX-A: b\r\n " + MARK + b"\r\n\r\n", 400),
    ("chunk_trailer_no_colon", b"0\r\nX-Foo\r\n" + MARK + b"\r\n\r\n", 400),
    ("chunked_body_over_max", b"".join(b"100\r\n" + b"x" * 256 + b"\r\n" for _ in range(5))
     + b"8\r\n" + MARK + b"\r\n0\r\n\r\n", 413),
]


def check_te_trailing_space(t, q):
    t.assertEqual(q.header_all("Transfer-Encoding"), ["chunked"])
    t.assertEqual(q.header_all("Content-Length"), [])
    t.assertEqual(q.body, b"abc")


def check_single_cl(value):
    def check(t, q):
        cls = q.header_all("Content-Length")
        t.assertEqual(len(cls), 1, "exactly one Content-Length must reach the app: %r" % q.headers)
        t.assertTrue(cls[0].isdigit() and int(cls[0]) == value,
                     "an unambiguous decimal Content-Length must reach the app: %r" % cls)
        t.assertEqual(len(q.body), value)
    return check


def check_absolute_form(t, q):
    t.assertEqual(q.header_all("Host"), ["other.example"])
    t.assertIn(q.target, ("http://other.example/abs", "/abs"))


def check_version(version):
    def check(t, q):
        t.assertEqual(q.version, version)
    return check


def check_header(name, value):
    def check(t, q):
        t.assertEqual(q.header_all(name), [value])
    return check


# Accepted (normalised) requests: (name, raw bytes, expected status, checker(test, app request))
ACCEPT = [
    ("te_trailing_space", post(H + b"Transfer-Encoding: chunked \r\n", b"3\r\nabc\r\n0\r\n\r\n"), 200,
     check_te_trailing_space),
    ("te_upper_case", post(H + b"Transfer-Encoding: CHUNKED\r\n", b"3\r\nabc\r\n0\r\n\r\n"), 200,
     lambda t, q: t.assertEqual(q.body, b"abc")),
    ("cl_duplicate_identical", post(H + b"Content-Length: 3\r\nContent-Length: 3\r\n", b"abc"), 200,
     check_single_cl(3)),
    ("cl_list_identical", post(H + b"Content-Length: 3, 3\r\n", b"abc"), 200, check_single_cl(3)),
    ("cl_leading_zeros", post(H + b"Content-Length: 003\r\n", b"abc"), 200, check_single_cl(3)),
    ("cl_zero", post(H + b"Content-Length: 0\r\n"), 200, check_single_cl(0)),
    ("absolute_form_overrides_host", get_with(H, target=b"http://other.example/abs"), 200, check_absolute_form),
    ("leading_empty_lines", b"\r\n\r\n" + get_with(H), 200, check_version("HTTP/1.1")),
    ("http10_without_host", b"GET /ten HTTP/1.0\r\n\r\n", 200, check_version("HTTP/1.0")),
    ("http10_expect_ignored", post(b"Expect: 100-continue\r\nContent-Length: 3\r\n", b"abc", version=b"HTTP/1.0"),
     200, lambda t, q: t.assertEqual(q.body, b"abc")),
    ("options_asterisk", b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n", 200,
     lambda t, q: t.assertEqual(q.target, "*")),
    ("empty_host", get_with(b"Host:\r\n"), 200, check_header("Host", "")),
    ("obs_text_value", get_with(H + b"X-Name: caf\xe9\r\n"), 200, check_header("X-Name", "caf\xe9")),
    ("value_ows_trimmed", get_with(H + b"X-Pad: \t padded \t\r\n"), 200, check_header("X-Pad", "padded")),
]


class BadInputTest(IntegrationTest):
    """One proxy and one recording app for all cases (--max-body-bytes 1024, --header-timeout 1s)."""

    expected_rejects = collections.Counter()

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.app = RecordingUpstream()
        cls.dp = Drainproxy(cls.app.port, "--health-interval", "100ms", "--health-timeout", "100ms",
                            "--max-body-bytes", str(MAX_BODY), "--header-timeout", "1s",
                            "--propagation-delay", "1s", "--drain-timeout", "5s", mode="http")

    @classmethod
    def tearDownClass(cls):
        cls.dp.close(dump_logs=bool(os.environ.get("DRAINPROXY_IT_VERBOSE")))
        cls.app.stop()

    def send_case(self, raw, timeout=5.0):
        c = HttpClient(self.dp.listen_port, timeout=timeout)
        self.addCleanup(c.close)
        c.send(raw)
        return c

    def assertRejected(self, c, status, timeout=5.0):
        r = c.read_response(timeout=timeout)
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.header("Connection"), "close", r)
        self.assertTrue(r.body, "the error response names the problem")
        self.expected_rejects[REASON_FOR[status]] += 1
        state = c.closed_state(3.0)
        self.assertEqual(state, "eof", "the proxy must close the connection after its %d" % status)
        return r

    def run_reject(self, raw, status):
        self.app.wait_quiet()
        before_bytes = self.app.total_received
        before_reqs = len(self.app.all_requests())
        c = self.send_case(raw)
        self.assertRejected(c, status)
        self.assertEqual(self.app.total_received, before_bytes,
                         "bytes reached the app: %r" % self.app.received_since(before_bytes)[:300])
        self.assertEqual(len(self.app.all_requests()), before_reqs)

    def run_bad_chunked(self, body, status):
        self.app.wait_quiet()
        before_complete = len(self.app.complete_requests())
        before_all = len(self.app.all_requests())
        offset = self.app.total_received
        c = self.send_case(chunked(body))
        self.assertRejected(c, status)
        # The head went upstream before the body was seen. The app must see that request
        # cut short: a strict prefix of the body that ends before the first invalid byte
        # (every case puts MARK after it), then the connection closes; never a complete request.
        reqs = harness.wait_for(lambda: self.app.all_requests()[before_all:] or None, 3.0,
                                desc="the forwarded head at the app")
        self.assertEqual(len(reqs), 1, reqs)
        harness.wait_for(lambda: self.app.records[reqs[0].conn_index]["done"].is_set(), 3.0,
                         desc="the app connection of the rejected request closed")
        got = self.app.received_since(offset)
        forwarded = got[got.index(b"\r\n\r\n") + 4:]
        self.assertTrue(body.startswith(forwarded) and len(forwarded) < len(body),
                        "the app got %d body bytes, not a strict prefix of the %d sent: %r"
                        % (len(forwarded), len(body), forwarded[-80:]))
        self.assertNotIn(MARK, forwarded, "invalid bytes reached the app")
        self.assertFalse(reqs[0].complete, "the app got a complete request: %r" % reqs[0])
        self.assertEqual(len(self.app.complete_requests()), before_complete)

    def run_accept(self, raw, status, check):
        self.app.wait_quiet()
        before = len(self.app.complete_requests())
        c = self.send_case(raw)
        r = c.read_response()
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.body, b"ok\n")
        reqs = self.app.complete_requests()[before:]
        self.assertEqual(len(reqs), 1, reqs)
        q = reqs[0]
        self.assertEqual(len(q.header_all("Host")), 1, q.headers)
        self.assertIsNone(q.header("Transfer-Encoding") and q.header("Content-Length"),
                          "both framings reached the app: %r" % q.headers)
        check(self, q)

    # ------------------------------------------------------------ special cases

    def test_header_timeout_408(self):
        before = self.app.total_received
        c = self.send_case(b"GET /" + MARK + b" HTTP/1.1\r\nHost: a.example\r\nX-Slow: ")
        t0 = time.monotonic()
        self.assertRejected(c, 408, timeout=4.0)
        took = time.monotonic() - t0
        self.assertGreater(took, 0.8, "408 before --header-timeout 1s")
        self.assertLess(took, 3.0)
        self.assertEqual(self.app.total_received, before)

    def test_header_timeout_counts_whole_head(self):
        """A client dribbling one header byte every 200 ms (slowloris) still gets 408 at ~1 s."""
        c = self.send_case(b"GET / HTTP/1.1\r\n")
        t0 = time.monotonic()
        for _ in range(20):   # bounded: at most 20 bytes, ~4 s
            if _readable(c.sock, 0.2):
                break
            try:
                c.send(b"X")
            except OSError:
                break
        self.assertRejected(c, 408, timeout=3.0)
        self.assertLess(time.monotonic() - t0, 3.0)

    def test_smuggled_bytes_after_rejected_request_are_never_used(self):
        """valid request, then an ambiguous one with a request hidden in its body, then more:
        the first is answered, the second rejected, and nothing after it reaches the app."""
        variants = [
            ("CL.TE", post(H + b"Content-Length: 44\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLE)),
            ("TE.CL", post(H + b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
                           b"%x\r\n" % len(SMUGGLE) + SMUGGLE + b"\r\n0\r\n\r\n")),
            ("TE obfuscated", post(H + b"Transfer-Encoding: chunked\r\nTransfer-encoding: x\r\n"
                                   b"Content-Length: 4\r\n", b"0\r\n\r\n" + SMUGGLE)),
            ("obs-fold TE", post(H + b"Content-Length: 5\r\nX-Pad: 1\r\n Transfer-Encoding: chunked\r\n",
                                 b"0\r\n\r\n" + SMUGGLE)),
            ("HTTP/0.9 line", b"GET /x\r\n" + SMUGGLE),
            ("CL overflow", post(H + b"Content-Length: 18446744073709551621\r\n", SMUGGLE)),
            ("Connection: content-length", post(H + b"Connection: content-length\r\nContent-Length: 0\r\n",
                                                SMUGGLE)),
            ("bare LF", b"GET /a HTTP/1.1\nHost: a.example\n\n" + SMUGGLE),
            ("space before colon", post(H + b"Content-Length : 0\r\n", SMUGGLE)),
        ]
        for name, bad in variants:
            with self.subTest(variant=name):
                self.app.wait_quiet()
                before = len(self.app.complete_requests())
                offset = self.app.total_received
                c = self.send_case(b"GET /first HTTP/1.1\r\n" + H + b"\r\n" + bad + SMUGGLE)
                r1 = c.read_response()
                self.assertEqual(r1.status, 200, r1)
                self.assertNotEqual(r1.header("Connection"), "close")
                self.assertRejected(c, 400)
                reqs = self.app.complete_requests()[before:]
                self.assertEqual([q.target for q in reqs], ["/first"])
                self.assertFalse(MARK in self.app.received_since(offset), "hostile bytes reached the app")

    def test_bad_chunk_after_good_pipelined_request(self):
        self.app.wait_quiet()
        before = len(self.app.complete_requests())
        before_all = len(self.app.all_requests())
        offset = self.app.total_received
        c = self.send_case(b"GET /one HTTP/1.1\r\n" + H + b"\r\n"
                           + chunked(b"3\r\nabc\r\nzz\r\n" + MARK + b"\r\n0\r\n\r\n") + SMUGGLE)
        self.assertEqual(c.read_response().status, 200)
        self.assertRejected(c, 400)
        # the second request's head went upstream: wait until the app saw it cut short
        harness.wait_for(lambda: len(self.app.all_requests()) >= before_all + 2, 3.0,
                         desc="both requests at the app")
        self.app.wait_quiet()
        reqs = self.app.complete_requests()[before:]
        self.assertEqual([q.target for q in reqs], ["/one"])
        self.assertFalse(MARK in self.app.received_since(offset), "hostile bytes reached the app")

    def test_valid_requests_still_work(self):
        c = self.send_case(b"GET /ok HTTP/1.1\r\n" + H + b"\r\n")
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"ok\n"))

    def test_zz_rejected_metrics_by_reason(self):
        """After the cases above (unittest runs methods in name order): the counters match."""
        m = self.dp.metrics()
        got = {lbl["reason"]: v for lbl, v in harness.series(m, "drainproxy_http_rejected_total")
               if v > 0}
        want = {k: float(v) for k, v in self.expected_rejects.items() if v > 0}
        print("\n  drainproxy_http_rejected_total: %s" % sorted(got.items()))
        print("  cases: %d rejected, %d bad chunked bodies, %d normalised"
              % (len(REJECT), len(BAD_CHUNKED), len(ACCEPT)))
        self.assertEqual(got, want)


def _readable(sock, timeout=0.0):
    r, _, _ = select.select([sock], [], [], timeout)
    return bool(r)


def _add_cases():
    for i, (name, raw, status) in enumerate(REJECT):
        def t(self, raw=raw, status=status):
            self.run_reject(raw, status)
        t.__doc__ = "%d <- %r" % (status, raw[:120])
        setattr(BadInputTest, "test_reject_%02d_%s" % (i, name), t)
    for i, (name, body, status) in enumerate(BAD_CHUNKED):
        def t(self, body=body, status=status):
            self.run_bad_chunked(body, status)
        t.__doc__ = "%d <- chunked body %r" % (status, body[:120])
        setattr(BadInputTest, "test_chunked_%02d_%s" % (i, name), t)
    for i, (name, raw, status, check) in enumerate(ACCEPT):
        def t(self, raw=raw, status=status, check=check):
            self.run_accept(raw, status, check)
        t.__doc__ = "normalised, %d <- %r" % (status, raw[:120])
        setattr(BadInputTest, "test_accept_%02d_%s" % (i, name), t)


_add_cases()


# ----------------------------------------------------------------------------
# upstream failures and limits (one proxy per test)
# ----------------------------------------------------------------------------

class SilentUpstream(TcpServer):
    """Accepts, reads whatever comes, never answers."""

    def handle(self, conn, record):
        conn.settimeout(30)
        while True:
            data = conn.recv(65536)
            if not data:
                return
            record["received"] += len(data)


class GarbageUpstream(TcpServer):
    """Reads one request head, answers with `reply`, then closes."""

    def __init__(self, reply, port=0, start=True):
        self.reply = reply
        super().__init__(port=port, start=start)

    def handle(self, conn, record):
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
            record["received"] += len(data)
        conn.sendall(self.reply)
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(2)
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass


class UpstreamErrorTest(IntegrationTest):

    def proxy(self, port, *flags):
        return self.start_http_proxy(port, *self.FAST, "--propagation-delay", "1s",
                                     "--drain-timeout", "5s", *flags)

    def get(self, dp, path=b"/", timeout=5.0):
        c = HttpClient(dp.listen_port, timeout=timeout)
        self.addCleanup(c.close)
        c.send(b"GET " + path + b" HTTP/1.1\r\nHost: a.example\r\n\r\n")
        return c

    def assertProxyError(self, dp, c, status, timeout=5.0):
        r = c.read_response(timeout=timeout)
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.header("Connection"), "close", r)
        self.assertEqual(c.closed_state(3.0), "eof")
        reason = REASON_FOR[status]
        dp.wait_for(lambda: dp.metric("drainproxy_http_rejected_total", reason=reason) == 1.0, 2.0,
                    desc="drainproxy_http_rejected_total{reason=%s} == 1" % reason)
        return r

    def test_app_down_502(self):
        dp = self.proxy(free_port(), "--health-check", "none")
        c = self.get(dp)
        self.assertProxyError(dp, c, 502)
        self.assertGreaterEqual(dp.metric("drainproxy_upstream_connect_errors_total"), 1.0)

    def test_app_silent_504(self):
        app = self.start_server(SilentUpstream)
        dp = self.proxy(app.port, "--upstream-timeout", "1s")
        t0 = time.monotonic()
        c = self.get(dp)
        self.assertProxyError(dp, c, 504, timeout=5.0)
        took = time.monotonic() - t0
        self.assertGreater(took, 0.8)
        self.assertLess(took, 3.0)

    def test_app_garbage_502(self):
        replies = [
            b"garbage\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
            b"HTTP/1.1 200 OK\r\nX Bad: 1\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nContent-Len",          # closed in the middle of the head
            b"",                                        # closed without a byte
            b"HTTP/3.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
            # a chunked body that is malformed in the bytes that came with the head:
            # nothing has reached the client, so it still gets an answer
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n-1\r\n",
        ]
        for i, reply in enumerate(replies):
            with self.subTest(reply=reply):
                app = self.start_server(GarbageUpstream, reply)
                dp = self.proxy(app.port)
                c = self.get(dp, b"/garbage%d" % i)
                self.assertProxyError(dp, c, 502)

    def test_max_connections_503(self):
        app = self.start_server(RecordingUpstream)
        dp = self.proxy(app.port, "--max-connections", "2")
        held = [harness.connect(dp.listen_port) for _ in range(2)]
        for s in held:
            self.addCleanup(s.close)
        dp.wait_for(lambda: dp.status()["connections_active"] == 2, 3.0, desc="2 active connections")
        c = self.get(dp)
        r = c.read_response()
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.header("Connection"), "close")
        self.assertEqual(c.closed_state(3.0), "eof")
        dp.wait_for(lambda: dp.metric("drainproxy_http_rejected_total", reason="overload") == 1.0, 2.0,
                    desc="rejected{reason=overload} == 1")
        self.assertEqual(app.total_received, 0)
        # the held connections still work, and once one closes a new one is accepted
        held[0].sendall(b"GET /held HTTP/1.1\r\nHost: a\r\n\r\n")
        r = HttpClient(0, sock=held[0]).read_response()
        self.assertEqual(r.status, 200)
        held[1].close()
        dp.wait_for(lambda: dp.status()["connections_active"] == 1, 3.0, desc="1 active connection")
        c2 = self.get(dp, b"/again")
        self.assertEqual(c2.read_response().status, 200)

    def test_max_header_bytes_4096_431(self):
        app = self.start_server(RecordingUpstream)
        dp = self.proxy(app.port, "--max-header-bytes", "4096")
        c = HttpClient(dp.listen_port)
        self.addCleanup(c.close)
        c.send(b"GET /small HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * 3000 + b"\r\n\r\n")
        self.assertEqual(c.read_response().status, 200)
        c2 = HttpClient(dp.listen_port)
        self.addCleanup(c2.close)
        c2.send(b"GET /big HTTP/1.1\r\nHost: a\r\nX-Big: " + MARK + b"v" * 5000 + b"\r\n\r\n")
        self.assertProxyError(dp, c2, 431)
        self.assertFalse(MARK in app.received_since(0), "hostile bytes reached the app")
        self.assertEqual([q.target for q in app.complete_requests()], ["/small"])


if __name__ == "__main__":
    harness.main()
