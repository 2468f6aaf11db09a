"""Entry point: `python tools/prepare.py FORMAT ROOT --out DIR` (same as `videoseq prepare`).

Also `python tools/prepare.py resize ROOT --short-side N --out DIR` and
`python tools/prepare.py frames ROOT --out DIR [--size N]`.
"""

import sys

from videoseq.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["prepare", *sys.argv[1:]]))
