"""Tests of docker-config.py: python3 -m unittest discover -s scripts/lib -p 'test_*.py'"""

import json
import os
import stat
import subprocess
import sys
import tempfile
import unittest

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "docker-config.py")


def run_merge(path):
    """docker-config.py merge PATH: (exit status, stdout lines, stderr)."""
    p = subprocess.run([sys.executable, SCRIPT, "merge", path], capture_output=True, text=True)
    return p.returncode, p.stdout.splitlines(), p.stderr


class MergeTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        self.path = os.path.join(self.dir, "daemon.json")
        self.backup = self.path + ".before-ckpt"

    def tearDown(self):
        self.tmp.cleanup()

    def write(self, text, mode=0o644):
        with open(self.path, "w") as f:
            f.write(text)
        os.chmod(self.path, mode)

    def read(self, path=None):
        with open(path or self.path) as f:
            return json.load(f)

    def merged(self, text):
        """Write TEXT, merge it: (stdout lines, resulting config)."""
        self.write(text)
        rc, out, err = run_merge(self.path)
        self.assertEqual(rc, 0, err)
        return out, self.read()

    def test_missing_file(self):
        rc, out, err = run_merge(self.path)
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.read(), {"experimental": True, "iptables": False, "bridge": "none"})
        self.assertEqual(out, [
            "experimental: (absent) -> true",
            "iptables: (absent) -> false",
            'bridge: (absent) -> "none"',
        ])
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o644)
        self.assertFalse(os.path.exists(self.backup), "no backup of a file that did not exist")
        self.assertEqual(os.listdir(self.dir), ["daemon.json"], "no temporary file left")

    def test_new_file_mode_ignores_umask(self):
        old = os.umask(0o077)
        try:
            rc, _, err = run_merge(self.path)
        finally:
            os.umask(old)
        self.assertEqual(rc, 0, err)
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o644)

    def test_empty_file(self):
        for text in ("", "\n  \n"):
            with self.subTest(text=text):
                out, config = self.merged(text)
                self.assertEqual(config, {"experimental": True, "iptables": False, "bridge": "none"})
                self.assertEqual(len(out), 3)
                os.remove(self.backup)

    def test_existing_keys_kept(self):
        user = {
            "registry-mirrors": ["https://mirror.example.org"],
            "data-root": "/srv/docker",
            "log-driver": "json-file",
            "log-opts": {"max-size": "10m", "max-file": "3", "labels": "a,b"},
            "default-address-pools": [{"base": "172.80.0.0/16", "size": 24}],
            "runtimes": {"custom": {"path": "/usr/local/bin/custom", "runtimeArgs": ["--x"]}},
            "features": {"buildkit": True},
            "labels": ["ünïcode=yes"],
        }
        out, config = self.merged(json.dumps(user))
        for key, value in user.items():
            self.assertEqual(config[key], value, key)
        self.assertEqual(config["experimental"], True)
        self.assertEqual(set(config), set(user) | {"experimental", "iptables", "bridge"})
        self.assertEqual(len(out), 3)

    def test_key_order_kept(self):
        _, config = self.merged('{"b": 1, "a": 2, "experimental": false, "c": 3}')
        self.assertEqual(list(config), ["b", "a", "experimental", "c", "iptables", "bridge"])

    def test_experimental_false_to_true(self):
        out, config = self.merged('{"experimental": false, "iptables": false, "bridge": "none"}')
        self.assertEqual(out, ["experimental: false -> true"])
        self.assertIs(config["experimental"], True)

    def test_experimental_not_a_boolean(self):
        for old, shown in (('1', '1'), ('"true"', '"true"'), ('null', 'null')):
            with self.subTest(old=old):
                out, config = self.merged('{"experimental": %s, "iptables": true, "bridge": "x"}' % old)
                self.assertEqual(out, [f"experimental: {shown} -> true"])
                self.assertIs(config["experimental"], True)

    def test_users_iptables_and_bridge_kept(self):
        out, config = self.merged('{"iptables": true, "bridge": "docker1"}')
        self.assertEqual(out, ["experimental: (absent) -> true"])
        self.assertEqual(config, {"iptables": True, "bridge": "docker1", "experimental": True})

    def test_only_missing_default_added(self):
        out, config = self.merged('{"experimental": true, "iptables": true}')
        self.assertEqual(out, ['bridge: (absent) -> "none"'])
        self.assertEqual(config, {"experimental": True, "iptables": True, "bridge": "none"})

    def test_invalid_json_refused(self):
        for text in ('{"experimental": true,', "[1, 2]", '"x"', '{"a": 1, "a": 2}', b"\xff{}"):
            with self.subTest(text=text):
                mode = "wb" if isinstance(text, bytes) else "w"
                with open(self.path, mode) as f:
                    f.write(text)
                os.utime(self.path, ns=(1_000_000_000, 1_000_000_000))
                before = os.stat(self.path)
                rc, out, err = run_merge(self.path)
                self.assertEqual(rc, 2)
                self.assertEqual(out, [])
                self.assertIn(self.path, err)
                self.assertIn("by hand", err)
                after = os.stat(self.path)
                self.assertEqual((after.st_ino, after.st_mtime_ns), (before.st_ino, before.st_mtime_ns))
                with open(self.path, mode.replace("w", "r")) as f:
                    self.assertEqual(f.read(), text)
                self.assertFalse(os.path.exists(self.backup))
                self.assertEqual(os.listdir(self.dir), ["daemon.json"])

    def test_no_write_when_nothing_changes(self):
        text = '{"experimental":true,"iptables":true,"bridge":"none","data-root":"/srv/d"}'
        self.write(text)
        os.utime(self.path, ns=(1_000_000_000, 1_000_000_000))
        before = os.stat(self.path)
        rc, out, err = run_merge(self.path)
        self.assertEqual((rc, out, err), (0, [], ""))
        after = os.stat(self.path)
        self.assertEqual((after.st_ino, after.st_mtime_ns), (before.st_ino, before.st_mtime_ns))
        with open(self.path) as f:
            self.assertEqual(f.read(), text, "formatting untouched")
        self.assertFalse(os.path.exists(self.backup))

    def test_second_merge_changes_nothing(self):
        self.merged('{"log-driver": "local"}')
        rc, out, _ = run_merge(self.path)
        self.assertEqual((rc, out), (0, []))

    def test_backup_made_once(self):
        original = '{"experimental": false, "log-driver": "local"}'
        self.write(original, 0o640)
        os.utime(self.path, ns=(1_000_000_000, 2_000_000_000))
        rc, _, err = run_merge(self.path)
        self.assertEqual(rc, 0, err)
        with open(self.backup) as f:
            self.assertEqual(f.read(), original, "the backup holds the old file byte for byte")
        st = os.stat(self.backup)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o640)
        self.assertEqual(st.st_mtime_ns, 2_000_000_000)

        # A later change (the user turned experimental off again) keeps the
        # first backup: it is the configuration from before ckpt.
        self.write('{"experimental": false, "log-driver": "json-file", "iptables": false, "bridge": "none"}')
        rc, out, err = run_merge(self.path)
        self.assertEqual((rc, out), (0, ["experimental: false -> true"]), err)
        with open(self.backup) as f:
            self.assertEqual(f.read(), original)
        self.assertEqual(self.read()["log-driver"], "json-file")

    def test_file_mode_kept(self):
        for mode in (0o600, 0o640, 0o644):
            with self.subTest(mode=oct(mode)):
                self.write('{"debug": true}', mode)
                rc, _, err = run_merge(self.path)
                self.assertEqual(rc, 0, err)
                self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), mode)
                self.assertEqual(self.read()["debug"], True)
                os.remove(self.backup)

    def test_symlink_target_rewritten(self):
        real = os.path.join(self.dir, "real.json")
        with open(real, "w") as f:
            f.write('{"debug": true}')
        os.symlink(real, self.path)
        rc, _, err = run_merge(self.path)
        self.assertEqual(rc, 0, err)
        self.assertTrue(os.path.islink(self.path))
        self.assertEqual(self.read(real)["experimental"], True)

    def test_usage(self):
        p = subprocess.run([sys.executable, SCRIPT, "frobnicate", self.path], capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)
        self.assertIn("usage", p.stderr)
        self.assertFalse(os.path.exists(self.path))


if __name__ == "__main__":
    unittest.main()
