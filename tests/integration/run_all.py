#!/usr/bin/env python3
"""Run every tests/integration/test_*.py as its own process; print a summary.

Usage: python3 tests/integration/run_all.py [name-substring ...]
Exit code 0 only if every selected file passed. Each file is bounded (300 s).
"""

import glob
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FILE_TIMEOUT = 300


def main(argv):
    files = sorted(glob.glob(os.path.join(HERE, "test_*.py")))
    if argv:
        files = [f for f in files if any(a in os.path.basename(f) for a in argv)]
    results = []
    for f in files:
        t0 = time.monotonic()
        try:
            rc = subprocess.run([sys.executable, f], timeout=FILE_TIMEOUT).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        results.append((os.path.basename(f), rc, time.monotonic() - t0))
    print("\n==== integration summary ====")
    for name, rc, took in results:
        print("%-28s %-8s %6.1fs" % (name, "PASS" if rc == 0 else "FAIL(%s)" % rc, took))
    return 0 if results and all(rc == 0 for _, rc, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
