#!/usr/bin/env python3
"""Draw the rolling-update timelines written by tests/e2e/rollout.py.

    python3 bench/rollout_timeline.py RESULT_DIR [-o docs/rollout-timeline.png] [--bin 0.2]

One panel per scenario (RESULT_DIR/<scenario>.json): successful requests per second (grey,
left axis), failed requests per second stacked by class (right axis), and vertical marks
for the pods' phases: terminating, Service rule removed (kube-proxy), SIGTERM to the app,
pod exited. Needs matplotlib (Debian: apt-get install -y python3-matplotlib); without it
the script says so and exits 0 without drawing.
"""

import argparse
import json
import os
import sys

ORDER = ["app-alone", "prestop-sleep", "drainproxy-http", "drainproxy-tcp"]
CLASS_COLORS = {
    "refused": "#d62728",
    "reset": "#ff7f0e",
    "eof": "#9467bd",
    "timeout": "#8c564b",
    "5xx": "#e377c2",
    "other": "#17becf",
}
MARKS = [
    # event, label, color, linestyle
    ("terminating", "pod terminating", "#ff9900", "--"),
    ("SIGTERM app", "SIGTERM to the app", "#9467bd", "-."),
    ("exited", "pod exited", "#333333", "-"),
]
LAG_COLOR = "#ffd27f"   # span: pod terminating -> its Service rule removed (kube-proxy lag)


def load(result_dir):
    out = []
    for name in ORDER:
        path = os.path.join(result_dir, name + ".json")
        if os.path.exists(path):
            with open(path) as f:
                out.append(json.load(f))
    return out


def bins_for(res, width):
    end = res["duration"]
    n = int(end / width) + 1
    ok = [0] * n
    classes = res["classes"]
    fail = {c: [0] * n for c in classes[1:]}
    for t_start, t_end, _kind, cls, _fresh in res["requests"]:
        i = min(n - 1, int(t_end / width))
        if cls == 0:
            ok[i] += 1
        else:
            fail[classes[cls]][i] += 1
    xs = [i * width for i in range(n)]
    scale = 1.0 / width
    return xs, [v * scale for v in ok], {c: [v * scale for v in vs] for c, vs in fail.items()}


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("result_dir")
    ap.add_argument("-o", "--output", default="docs/rollout-timeline.png")
    ap.add_argument("--bin", type=float, default=0.2, help="bin width in seconds (0.1-0.25)")
    args = ap.parse_args(argv)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch
    except ImportError:
        print("rollout_timeline: matplotlib is missing (apt-get install -y python3-matplotlib); "
              "no picture drawn")
        return 0
    results = load(args.result_dir)
    if not results:
        print("rollout_timeline: no <scenario>.json in %s" % args.result_dir)
        return 1

    fig, axes = plt.subplots(len(results), 1, figsize=(14, 3.1 * len(results) + 0.8),
                             sharex=False, squeeze=False)
    xmax = max(r["duration"] for r in results)
    for ax, res in zip(axes[:, 0], results):
        xs, ok, fail = bins_for(res, args.bin)
        ax.fill_between(xs, ok, step="post", color="#bbbbbb", alpha=0.8, linewidth=0, zorder=1)
        ax.set_ylabel("ok req/s", color="#666666")
        ax.set_ylim(0, max(ok + [1]) * 1.15)
        ax.set_xlim(0, xmax)
        ax2 = ax.twinx()
        bottom = [0.0] * len(xs)
        peak = 0.0
        for c, color in CLASS_COLORS.items():
            vs = fail.get(c)
            if not vs or not any(vs):
                continue
            ax2.bar(xs, vs, width=args.bin, bottom=bottom, align="edge", color=color,
                    linewidth=0)
            bottom = [b + v for b, v in zip(bottom, vs)]
            peak = max(peak, max(bottom))
        ax2.set_ylim(0, max(peak * 1.15, 10))
        ax2.set_ylabel("failed req/s", color="#d62728")
        ax2.tick_params(axis="y", colors="#d62728")
        term = {m["pod"]: m["t"] for m in res["marks"] if m["event"] == "terminating"}
        for m in res["marks"]:
            if m["event"] == "rule removed" and m["pod"] in term:
                ax.axvspan(term[m["pod"]], m["t"], color=LAG_COLOR, alpha=0.45, linewidth=0,
                           zorder=0)
        for event, _label, color, style in MARKS:
            for m in res["marks"]:
                if m["event"] == event:
                    ax.axvline(m["t"], color=color, linestyle=style, linewidth=1.0, alpha=0.9)
        byc = ", ".join("%s %d" % (c, n) for c, n in res["by_class"].items() if n) or "none"
        ax.set_title("%s  -  %d requests, %d failed (%s)" % (
            res["title"], res["requests_total"], res["failures_total"], byc),
            loc="left", fontsize=11, color="#aa0000" if res["failures_total"] else "#006600")
        ax.grid(axis="x", alpha=0.25)
    axes[-1, 0].set_xlabel("seconds since the scenario started (bins of %g ms)" % (args.bin * 1000))
    handles = [Patch(color="#bbbbbb", label="successful requests/s")]
    handles += [Patch(color=c, label="failed: " + k) for k, c in CLASS_COLORS.items()]
    handles += [Patch(color=LAG_COLOR, alpha=0.6,
                      label="terminating, Service rule still in (kube-proxy lag)")]
    handles += [Line2D([0], [0], color=c, linestyle=s, label=l) for _e, l, c, s in MARKS]
    s = results[0]["settings"]
    fig.suptitle("Rolling update of %d pods, %d rollout(s), kube-proxy lag %.1fs, under load "
                 "(keep-alive, idle and new-connection clients)"
                 % (s["pods"], s["rounds"], s["lag"]), fontsize=12)
    fig.legend(handles=handles, loc="lower center", ncol=6, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    fig.savefig(args.output, dpi=110)
    print("rollout_timeline: wrote %s" % args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
