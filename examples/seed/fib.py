"""The seed's first program: the next Fibonacci number every interval.

Prints the same machine-readable lines as `ckpt-workload fib`, so that a
restored run can be checked for continuity (index and value).
Usage: python3 fib.py [interval-seconds]
"""
import sys
import time


def main() -> None:
    interval = float(sys.argv[1]) if len(sys.argv) > 1 else 4.0
    print("ckpt ready workload=fib", flush=True)
    current, following, index = 0, 1, 0
    while True:
        print(f"ckpt fib index={index} value={current}", flush=True)
        current, following = following, current + following
        index += 1
        time.sleep(interval)


if __name__ == "__main__":
    main()
