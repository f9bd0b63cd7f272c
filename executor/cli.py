"""`hpcbench-executor`: placeholder until the executor issue (#3) lands."""
import sys


def main() -> int:
    print("hpcbench-executor: not yet available; it arrives with issue #3.", file=sys.stderr)
    return 3
