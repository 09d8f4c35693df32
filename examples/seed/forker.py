"""The seed's second program: N child processes that print their pid.

The parent prints one `ready` line with every pid once all children run,
then waits; each child prints its pid every second.
Usage: python3 forker.py N
"""
import os
import sys
import time


def say(line: str) -> None:
    """Prints one protocol line in a single write. Under `python3 -u` (the
    Dockerfile's entrypoint) print writes the text and the newline apart,
    so lines of processes printing at once could interleave."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def child() -> None:
    while True:
        say(f"ckpt child pid={os.getpid()}")
        time.sleep(1)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    pids = [os.getpid()]
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            child()
        pids.append(pid)
    say(f"ckpt ready workload=forker children={count} pids={','.join(map(str, pids))}")
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
