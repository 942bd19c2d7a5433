"""Unit tests of the client config reader and the envelope (no cluster).
Run by TestPythonClientConfig (integration/bootstrap):
/usr/bin/python3 -m unittest discover -s tests -p 'test_*.py'."""

import base64
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import skiff  # noqa: E402
from skiff.api.v1 import core_pb2, meta_pb2  # noqa: E402

PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def b64(b):
    return base64.b64encode(b).decode()


class ConfigTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def write(self, name, text):
        p = os.path.join(self.dir.name, name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def test_contexts_pick_the_current_or_named_cluster(self):
        ctx = ("- name: %s\n  servers: [%s]\n  certificate-authority-data: %s\n"
               "  client-certificate-data: %s\n  client-key-data: %s\n")
        p = self.write("multi.conf", "current-context: b\ncontexts:\n" +
                       ctx % ("a", "127.0.0.1:1", b64(PEM), b64(PEM), b64(PEM)) +
                       ctx % ("b", "127.0.0.1:2", b64(PEM), b64(PEM), b64(PEM)))
        self.assertEqual(skiff.Config.load(p).servers, ["127.0.0.1:2"])
        self.assertEqual(skiff.Config.load(p, context="a").servers, ["127.0.0.1:1"])
        with self.assertRaisesRegex(skiff.ConfigError, r"no context 'c' \(contexts: a, b\)"):
            skiff.Config.load(p, context="c")

    def test_inline_data_as_ctl_user_create_writes_it(self):
        p = self.write("u.conf", "servers:\n- 127.0.0.1:7443\n- 127.0.0.2:7443\ncertificate-authority-data: %s\n"
                       "client-certificate-data: %s\nclient-key-data: %s\n" % (b64(PEM), b64(PEM), b64(PEM)))
        cfg = skiff.Config.load(p)
        self.assertEqual(cfg.servers, ["127.0.0.1:7443", "127.0.0.2:7443"])
        self.assertEqual(cfg.ca_pem, PEM)
        self.assertEqual(cfg.namespace, "default")

    def test_files_relative_to_the_config(self):
        for n in ("ca.crt", "admin.crt", "admin.key"):
            self.write(n, PEM.decode())
        p = self.write("admin.conf", "servers: [127.0.0.1:7443]\ncertificate-authority: ca.crt\n"
                       "client-certificate: admin.crt\nclient-key: admin.key\nnamespace: team\n")
        cfg = skiff.Config.load(p)
        self.assertEqual((cfg.key_pem, cfg.namespace), (PEM, "team"))

    def test_environment_names_the_default_file(self):
        p = self.write("env.conf", "servers: [a:1]\ncertificate-authority-data: %s\nclient-certificate-data: %s\n"
                       "client-key-data: %s\n" % (b64(PEM), b64(PEM), b64(PEM)))
        old = os.environ.get(skiff.client.CONFIG_ENV)
        os.environ[skiff.client.CONFIG_ENV] = p
        try:
            self.assertEqual(skiff.Config.load().servers, ["a:1"])
        finally:
            if old is None:
                del os.environ[skiff.client.CONFIG_ENV]
            else:
                os.environ[skiff.client.CONFIG_ENV] = old

    def assertRefused(self, text, *want):
        p = self.write("bad.conf", text)
        with self.assertRaises(skiff.ConfigError) as cm:
            skiff.Config.load(p)
        for w in want:
            self.assertIn(w, str(cm.exception))

    def test_bad_input_names_the_problem(self):
        good = "certificate-authority-data: %s\nclient-certificate-data: %s\nclient-key-data: %s\n" % (
            b64(PEM), b64(PEM), b64(PEM))
        self.assertRefused("servers: []\n" + good, "servers: at least one server")
        self.assertRefused("servers: [a:1]\nserver: b\n" + good, "unknown field 'server'")
        self.assertRefused("servers: [a:1]\ncertificate-authority-data: '%%%%'\n", "certificate-authority-data: not base64")
        self.assertRefused("servers: [a:1]\ncertificate-authority: missing.crt\n", "certificate-authority:", "missing.crt")
        self.assertRefused("servers: [a:1]\ncertificate-authority-data: %s\n" % b64(b"not pem"),
                           "certificate-authority-data: no PEM block")
        self.assertRefused("servers: [a:1]\ncertificate-authority-data: %s\n" % b64(PEM),
                           "client-certificate or client-certificate-data is required")
        self.assertRefused("- just\n- a list\n", "want a mapping")
        with self.assertRaises(skiff.ConfigError) as cm:
            skiff.Config.load(os.path.join(self.dir.name, "absent.conf"))
        self.assertIn("absent.conf", str(cm.exception))


class EnvelopeTest(unittest.TestCase):
    def test_pack_and_unpack_by_type_url(self):
        cm = core_pb2.ConfigMap()
        cm.metadata.name = "x"
        cm.data["k"] = "v"
        env = skiff.pack(cm)
        self.assertEqual((env.kind, env.object.type_url), ("ConfigMap", "type.googleapis.com/skiff.api.v1.ConfigMap"))
        self.assertEqual(skiff.unpack(env), cm)

    def test_unknown_prefix_is_refused(self):
        env = meta_pb2.Object(kind="ConfigMap")
        env.object.type_url = "example.com/skiff.api.v1.ConfigMap"
        with self.assertRaisesRegex(ValueError, "does not start with type.googleapis.com/"):
            skiff.unpack(env)


if __name__ == "__main__":
    unittest.main()
