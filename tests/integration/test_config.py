#!/usr/bin/env python3
"""Configuration errors exit 2 with a message naming the flag (and the value);
--help/--version exit 0; environment variables work and flags win over them."""

import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import IntegrationTest, free_port, run_proxy_cli  # noqa: E402


def base_args():
    """A valid command line (free loopback ports), to which one bad flag is added."""
    return ["--listen", "127.0.0.1:%d" % free_port(), "--admin", "127.0.0.1:%d" % free_port(),
            "--upstream", "127.0.0.1:%d" % free_port(), "--workers", "2", "--mode", "tcp",
            "--propagation-delay", "1s", "--drain-timeout", "3s"]


def with_override(args, flag, value):
    """args with `flag` set to `value` (replacing an existing occurrence)."""
    out = list(args)
    if flag in out:
        i = out.index(flag)
        out[i + 1] = value
    else:
        out += [flag, value]
    return out


class ConfigErrorTest(IntegrationTest):

    def assert_config_error(self, args, names, value=None, env=None):
        """Exit code 2; stderr contains one of `names` (and `value` if given)."""
        res = run_proxy_cli(args, env=env, timeout=10.0)
        msg = "drainproxy %s%s\nexit=%s\nstderr=%r" % (
            " ".join(args), " (env %r)" % env if env else "", res.returncode, res.stderr[-2000:])
        self.assertEqual(res.returncode, 2, msg)
        if isinstance(names, str):
            names = (names,)
        self.assertTrue(any(n in res.stderr for n in names),
                        "stderr must name %s\n%s" % (" or ".join(names), msg))
        if value is not None:
            self.assertIn(value, res.stderr, "stderr must name the bad value %r\n%s" % (value, msg))
        return res

    # --- durations -------------------------------------------------------

    def test_bad_duration_unit(self):
        self.assert_config_error(with_override(base_args(), "--drain-timeout", "5x"),
                                 "--drain-timeout", "5x")

    def test_negative_duration(self):
        self.assert_config_error(with_override(base_args(), "--propagation-delay", "-1s"),
                                 "--propagation-delay", "-1s")

    def test_bare_number_duration(self):
        self.assert_config_error(with_override(base_args(), "--drain-timeout", "5"),
                                 "--drain-timeout")

    def test_bad_health_interval(self):
        self.assert_config_error(with_override(base_args(), "--health-interval", "fast"),
                                 "--health-interval", "fast")

    # --- addresses -------------------------------------------------------

    def test_listen_without_port(self):
        self.assert_config_error(with_override(base_args(), "--listen", "nohost"),
                                 "--listen", "nohost")

    def test_upstream_port_out_of_range(self):
        self.assert_config_error(with_override(base_args(), "--upstream", "127.0.0.1:99999"),
                                 "--upstream", "99999")

    def test_admin_bad_address(self):
        self.assert_config_error(with_override(base_args(), "--admin", "127.0.0.1:notaport"),
                                 "--admin", "notaport")

    # --- other values ----------------------------------------------------

    def test_unknown_flag(self):
        self.assert_config_error(base_args() + ["--no-such-flag", "1"], "no-such-flag")

    def test_bad_mode(self):
        self.assert_config_error(with_override(base_args(), "--mode", "bogus"), "--mode", "bogus")

    def test_bad_health_check(self):
        self.assert_config_error(with_override(base_args(), "--health-check", "bogus"),
                                 "--health-check", "bogus")

    def test_zero_workers(self):
        self.assert_config_error(with_override(base_args(), "--workers", "0"), "--workers")

    def test_non_numeric_max_connections(self):
        self.assert_config_error(with_override(base_args(), "--max-connections", "many"),
                                 "--max-connections", "many")

    def test_bad_log_format(self):
        self.assert_config_error(with_override(base_args(), "--log-format", "xml"),
                                 "--log-format", "xml")

    # --- timing budget ---------------------------------------------------

    def test_timing_misfit_names_grace_period(self):
        args = with_override(with_override(base_args(), "--propagation-delay", "20s"),
                             "--drain-timeout", "20s")
        self.assert_config_error(args, "--termination-grace-period")

    def test_timing_misfit_margin(self):
        # 1s + 8.5s + margin max(1s, 10s/10) = 10.5s > 10s
        args = with_override(with_override(base_args(), "--propagation-delay", "1s"),
                             "--drain-timeout", "8.5s") + ["--termination-grace-period", "10s"]
        self.assert_config_error(args, "--termination-grace-period")

    # --- environment -----------------------------------------------------

    def test_bad_env_value(self):
        args = [a for a in base_args()]
        i = args.index("--drain-timeout")
        del args[i:i + 2]
        self.assert_config_error(args, ("--drain-timeout", "DRAINPROXY_DRAIN_TIMEOUT"), "abc",
                                 env={"DRAINPROXY_DRAIN_TIMEOUT": "abc"})

    # --- help / version --------------------------------------------------

    def test_help_exits_0(self):
        res = run_proxy_cli(["--help"], timeout=5.0)
        self.assertEqual(res.returncode, 0, res.stderr)
        out = res.stdout + res.stderr
        for flag in ("--listen", "--upstream", "--drain-timeout", "--propagation-delay"):
            self.assertIn(flag, out, "--help output should list %s" % flag)

    def test_version_exits_0(self):
        res = run_proxy_cli(["--version"], timeout=5.0)
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertRegex(res.stdout + res.stderr, r"\d+\.\d+\.\d+")


class ConfigValuesTest(IntegrationTest):
    """Valid configurations start, and /status shows the effective timings."""

    def timings(self, *flags, env=None):
        upstream = self.start_echo()
        dp = self.start_proxy(upstream.port, *self.FAST, *flags, env=env)
        return dp.status()["timings"]

    def test_flags_win_over_env(self):
        t = self.timings("--drain-timeout", "3s", env={
            "DRAINPROXY_DRAIN_TIMEOUT": "7s",               # overridden by the flag
            "DRAINPROXY_PROPAGATION_DELAY": "2s",           # no flag: env applies
            "DRAINPROXY_TERMINATION_GRACE_PERIOD": "45s",   # no flag: env applies
        })
        self.assertAlmostEqual(t["drain_timeout_seconds"], 3.0, places=3, msg=t)
        self.assertAlmostEqual(t["propagation_delay_seconds"], 2.0, places=3, msg=t)
        self.assertAlmostEqual(t["termination_grace_period_seconds"], 45.0, places=3, msg=t)

    def test_duration_units(self):
        t = self.timings("--propagation-delay", "250ms", "--drain-timeout", "1.5s",
                         "--termination-grace-period", "1m")
        self.assertAlmostEqual(t["propagation_delay_seconds"], 0.25, places=3, msg=t)
        self.assertAlmostEqual(t["drain_timeout_seconds"], 1.5, places=3, msg=t)
        self.assertAlmostEqual(t["termination_grace_period_seconds"], 60.0, places=3, msg=t)

    def test_zero_duration_allowed(self):
        t = self.timings("--propagation-delay", "0", "--drain-timeout", "2s")
        self.assertEqual(t["propagation_delay_seconds"], 0, t)

    def test_json_log_format(self):
        upstream = self.start_echo()
        dp = self.start_proxy(upstream.port, *self.FAST, "--log-format", "json",
                              "--propagation-delay", "250ms", "--drain-timeout", "1s")
        dp.wait_ready(timeout=3.0)
        dp.send_signal(signal.SIGTERM)
        self.assertEqual(dp.wait_exit(timeout=3.0), 0)
        lines = [ln for ln in dp.stderr_text().splitlines() if ln.strip()]
        self.assertTrue(lines)
        msgs = []
        for ln in lines:
            try:
                obj = json.loads(ln)
            except ValueError:
                self.fail("--log-format json: stderr line is not JSON: %r" % ln)
            self.assertIsInstance(obj, dict, ln)
            for key in ("ts", "level", "logger", "msg"):
                self.assertIn(key, obj, ln)
            msgs.append(obj["msg"])
        self.assertTrue(any("listening on" in m for m in msgs), msgs)
        self.assertTrue(any("drain complete" in m for m in msgs), msgs)

    def test_listen_port_zero(self):
        """--listen 127.0.0.1:0: every worker serves the one chosen port."""
        upstream = self.start_echo()
        dp = harness.Drainproxy(upstream.port, *self.FAST, "--listen", "127.0.0.1:0",
                                "--propagation-delay", "1s", "--drain-timeout", "3s", start=False)
        self.addCleanup(lambda: dp.close(dump_logs=self._failed()))
        dp.listen_port = 0
        dp.start(wait_started=False)
        dp.wait_for(lambda: dp.try_get("/live")[0] == 200, 10.0, desc="/live")
        st = dp.status()
        host, _, port = st["listen"].rpartition(":")
        port = int(port)
        self.assertEqual(host, "127.0.0.1", st)
        self.assertNotEqual(port, 0, "/status must report the chosen port: %s" % st)
        self.assertIn("listening on 127.0.0.1:%d" % port, dp.stderr_text())
        socks = [harness.connect(port) for _ in range(20)]
        for s in socks:
            self.addCleanup(s.close)
        for i, s in enumerate(socks):
            self.assertEcho(s, b"conn %d" % i)
        dp.wait_for(lambda: dp.metric("drainproxy_connections_active") == 20, 3.0,
                    desc="20 active connections")
        labels = [lbl for lbl, _ in harness.series(dp.metrics(), "drainproxy_connections_total")]
        self.assertIn("127.0.0.1:0", [lbl.get("listener") for lbl in labels],
                      "listener label is the listen address as given: %s" % labels)

    def test_env_only_configuration(self):
        """Every flag has an environment variable (listen/admin/upstream included)."""
        upstream = self.start_echo()
        listen, admin = free_port(), free_port()
        env = {"DRAINPROXY_LISTEN": "127.0.0.1:%d" % listen,
               "DRAINPROXY_ADMIN": "127.0.0.1:%d" % admin,
               "DRAINPROXY_UPSTREAM": upstream.addr,
               "DRAINPROXY_WORKERS": "2",
               "DRAINPROXY_MODE": "tcp",
               "DRAINPROXY_PROPAGATION_DELAY": "1s",
               "DRAINPROXY_DRAIN_TIMEOUT": "3s",
               "DRAINPROXY_HEALTH_INTERVAL": "100ms"}
        dp = harness.Drainproxy(None, start=False, env=env, listen_port=listen, admin_port=admin)
        dp.argv = lambda: [harness.proxy_bin()]          # no flags at all
        self.addCleanup(lambda: dp.close(dump_logs=self._failed()))
        dp.start()
        dp.wait_ready(timeout=3.0)
        st = dp.status()
        self.assertEqual(st["upstream"], upstream.addr, st)
        self.assertAlmostEqual(st["timings"]["drain_timeout_seconds"], 3.0, places=3, msg=st)
        s = self.connect_proxy(dp)
        self.assertEcho(s, b"configured from the environment\n")


if __name__ == "__main__":
    harness.main()
