"""Entry point: `python tools/doctor.py MANIFEST_OR_ROOT [--workers N] [--write-clean OUT.csv]`
(same as `videoseq doctor`)."""

import sys

from videoseq.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["doctor", *sys.argv[1:]]))
