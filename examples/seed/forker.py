"""The seed's second program: N child processes that print their pid.

The parent prints one `ready` line with every pid once all children run,
then waits; each child prints its pid every second.
Usage: python3 forker.py N
"""
import os
import sys
import time


def child() -> None:
    while True:
        print(f"ckpt child pid={os.getpid()}", flush=True)
        time.sleep(1)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    pids = [os.getpid()]
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            child()
        pids.append(pid)
    print(f"ckpt ready workload=forker children={count} pids={','.join(map(str, pids))}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
