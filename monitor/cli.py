"""`hpcbench-monitor`: placeholder until the monitor issue (#5) lands."""
import sys


def main() -> int:
    print("hpcbench-monitor: not yet available; it arrives with issue #5.", file=sys.stderr)
    return 3
