"""The seed's first program: the next Fibonacci number every interval.

Prints the same machine-readable lines as `ckpt-workload fib`, so that a
restored run can be checked for continuity (index and value).
Usage: python3 fib.py [interval-seconds]
"""
import sys
import time


def say(line: str) -> None:
    """Prints one protocol line in a single write. Under `python3 -u` (the
    Dockerfile's entrypoint) print writes the text and the newline apart,
    so lines of processes printing at once could interleave."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    interval = float(sys.argv[1]) if len(sys.argv) > 1 else 4.0
    say("ckpt ready workload=fib")
    current, following, index = 0, 1, 0
    while True:
        say(f"ckpt fib index={index} value={current}")
        current, following = following, current + following
        index += 1
        time.sleep(interval)


if __name__ == "__main__":
    main()
