#!/usr/bin/env python3
"""Merge the settings ckpt needs into a Docker daemon.json, dropping nothing.

    docker-config.py merge PATH

- "experimental": true is set (checkpoints need it);
- "iptables": false and "bridge": "none" are added only when the file has no
  such key: Docker's default networking cannot start on hosts without
  iptables/netfilter, while a user who set either keeps the value;
- every other key, nested objects included, stays as it is.

A missing or empty file counts as {}. The file is rewritten (a temporary file
in the same directory, then a rename; the mode and owner kept, 0644 for a new
file) only when something changed, after copying the old file to
PATH.before-ckpt unless that backup exists already. One line per changed key
goes to stdout (`experimental: false -> true`); nothing is printed when
nothing changed. Exit status: 0 whether or not the file changed; 2 when the
file cannot be read, is not a JSON object or repeats a key (nothing is
written then); 1 when writing fails.
"""

import json
import os
import sys
import tempfile

# Keys whose value ckpt requires, whatever the file says.
REQUIRED = {"experimental": True}
# Keys added only when the file has none: a user's own value wins.
DEFAULTS = {"iptables": False, "bridge": "none"}

# The old value of a key the file did not have (None would be JSON null).
ABSENT = object()

BACKUP_SUFFIX = ".before-ckpt"
NEW_FILE_MODE = 0o644


class ConfigError(Exception):
    """The file cannot be merged; it must be fixed by hand."""


def _no_duplicate_keys(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def parse(text, path):
    """The configuration in TEXT (from PATH): a dict; empty text is {}."""
    if not text.strip():
        return {}
    try:
        config = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except ValueError as e:  # json.JSONDecodeError is a ValueError
        raise ConfigError(f"{path} is not valid JSON ({e}); fix it by hand and rerun") from e
    if not isinstance(config, dict):
        raise ConfigError(f"{path} does not hold a JSON object; fix it by hand and rerun")
    return config


def merge(config):
    """Apply REQUIRED and DEFAULTS to CONFIG in place; return the changes as
    (key, old, new) tuples, old being ABSENT for a key the file lacked."""
    changes = []
    for key, value in REQUIRED.items():
        if key not in config:
            changes.append((key, ABSENT, value))
        elif config[key] is not value:  # `is`: 1 == True, yet 1 is no JSON true
            changes.append((key, config[key], value))
        config[key] = value
    for key, value in DEFAULTS.items():
        if key not in config:
            changes.append((key, ABSENT, value))
            config[key] = value
    return changes


def describe(change):
    key, old, new = change
    old_text = "(absent)" if old is ABSENT else json.dumps(old)
    return f"{key}: {old_text} -> {json.dumps(new)}"


def write_atomic(path, data, mode, owner=None, times_ns=None):
    """Replace PATH with DATA (bytes) through a temporary file beside it."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            if owner is not None:
                try:
                    os.fchown(f.fileno(), *owner)
                except PermissionError:
                    pass
            os.fsync(f.fileno())
        if times_ns is not None:
            os.utime(tmp, ns=times_ns)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def merge_file(path):
    """Merge PATH as the module docstring says; return the change lines."""
    # A symlinked daemon.json stays a symlink: its target is rewritten.
    target = os.path.realpath(path)
    try:
        with open(target, "rb") as f:
            original = f.read()
            st = os.fstat(f.fileno())
    except FileNotFoundError:
        original, st = None, None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from e
    if original is None:
        config = {}
    else:
        try:
            text = original.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path} is not UTF-8 ({e}); fix it by hand and rerun") from e
        config = parse(text, path)

    changes = merge(config)
    if not changes:
        return []

    data = (json.dumps(config, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    if st is None:
        write_atomic(target, data, NEW_FILE_MODE)
    else:
        mode = st.st_mode & 0o7777
        owner = (st.st_uid, st.st_gid)
        backup = path + BACKUP_SUFFIX
        if not os.path.lexists(backup):
            write_atomic(backup, original, mode, owner, (st.st_atime_ns, st.st_mtime_ns))
        write_atomic(target, data, mode, owner)
    return [describe(c) for c in changes]


USAGE = "usage: docker-config.py merge PATH"


def main(argv):
    if len(argv) != 2 or argv[0] != "merge":
        print(USAGE, file=sys.stderr)
        return 2
    try:
        lines = merge_file(argv[1])
    except ConfigError as e:
        print(f"docker-config: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"docker-config: cannot write {e.filename or argv[1]}: {e.strerror}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
