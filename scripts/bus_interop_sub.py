#!/usr/bin/env python3
"""Same as `bus_interop.py sub ENDPOINT TOPIC_PREFIX COUNT` (kept for tests/bus.rs)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bus_interop  # noqa: E402

if len(sys.argv) != 4:
    print(__doc__, file=sys.stderr)
    sys.exit(64)
sys.exit(bus_interop.sub(sys.argv[1], sys.argv[2], int(sys.argv[3])))
