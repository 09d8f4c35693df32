# Shared by the measurement scripts that drive Docker directly (bench-sweep,
# docker-layers): the workload image they build, and what the Docker stack
# leaves behind for their containers. Source it; it defines functions only.

# build_workload_image DIR TAG: a FROM-scratch image of the static workload
# binary (as ckpt builds its own), from a build context in DIR.
build_workload_image() {
  cp target/x86_64-unknown-linux-gnu/release/ckpt-workload "$1/"
  printf 'FROM scratch\nCOPY ckpt-workload /ckpt-workload\nENTRYPOINT ["/ckpt-workload"]\n' >"$1/Dockerfile"
  docker build -q -t "$2" "$1" >/dev/null
}

# remove_docker_leftovers SINCE: what containerd and dockerd made after the
# file SINCE and never remove: containerd's checkpoint copies in /tmp
# (containerd#10166) and the empty namespace files of `--network none`
# sandboxes that nothing is mounted on any more.
remove_docker_leftovers() {
  find /tmp -maxdepth 1 -name 'ctrd-checkpoint*' -newer "$1" -exec rm -rf {} + 2>/dev/null || true
  find /var/run/docker/netns -maxdepth 1 -type f -empty -newer "$1" 2>/dev/null |
    while read -r f; do grep -q " $(readlink -f "$f") " /proc/self/mountinfo || rm -f "$f"; done
}
