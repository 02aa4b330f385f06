"""Certificates for the TLS integration tests, made at test time with the
openssl command (OpenSSL 3.0 as in Debian 12): private CAs, RSA 2048 and
ECDSA P-256 leaves with subjectAltName DNS names and IP 127.0.0.1, an expired
leaf, a leaf for the wrong host, client certificates from the CA and from an
unrelated second CA.

Use the session fixture `pki` (import it into a test module:
`from tls_certs import pki`), or make_pki(dir) directly.
"""
import os
import ssl
import subprocess

import pytest


def openssl(*args, cwd=None):
    """Run the openssl command; its stdout. Fails loudly with its stderr."""
    p = subprocess.run(["openssl"] + [str(a) for a in args], cwd=cwd,
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError("openssl %s: %s" % (" ".join(map(str, args)), p.stderr))
    return p.stdout


def genkey(path, kind):
    """A new private key at path: kind "rsa" (2048 bits) or "ec" (P-256)."""
    if kind == "rsa":
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                "-out", path)
    elif kind == "ec":
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-out", path)
    else:
        raise ValueError(kind)
    os.chmod(path, 0o600)


class Cert:
    """A certificate file and its key file (absolute paths); ca is the issuing
    CA (None for a CA itself). Leaves: cert is the leaf then its CA, leaf_only
    the leaf alone."""

    def __init__(self, name, cert, key, ca=None, subject=None):
        self.name, self.cert, self.key, self.ca, self.subject = name, cert, key, ca, subject

    def der(self):
        """The certificate in DER form, for comparing with what a peer served."""
        with open(self.cert) as f:
            pem = f.read()
        end = "-----END CERTIFICATE-----"
        return ssl.PEM_cert_to_DER_cert(pem[:pem.index(end) + len(end)] + "\n")

    def __repr__(self):
        return "Cert(%s)" % self.name


class CA(Cert):
    """A private CA in its own directory, able to sign leaves (valid now, or
    with explicit past dates through `openssl ca`)."""

    def __init__(self, dir, name, kind="ec", cn=None):
        self.dir = os.path.join(dir, name)
        os.makedirs(self.dir, exist_ok=True)
        key = os.path.join(self.dir, "ca.key")
        cert = os.path.join(self.dir, "ca.pem")
        genkey(key, kind)
        subj = "/O=Example/CN=%s" % (cn or name)
        openssl("req", "-x509", "-new", "-key", key, "-subj", subj, "-days", "30",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                "-out", cert)
        super().__init__(name, cert, key, None, subj)
        # `openssl ca` (the only OpenSSL 3.0 tool that takes a start date in
        # the past) wants a database and a serial file
        self.db = os.path.join(self.dir, "db")
        os.makedirs(self.db, exist_ok=True)
        open(os.path.join(self.db, "index.txt"), "w").close()
        with open(os.path.join(self.db, "serial"), "w") as f:
            f.write("1000\n")
        self.ca_conf = os.path.join(self.dir, "ca.cnf")
        with open(self.ca_conf, "w") as f:
            f.write("[ca]\ndefault_ca = tb\n[tb]\n"
                    "database = %s/index.txt\nnew_certs_dir = %s\nserial = %s/serial\n"
                    "default_md = sha256\npolicy = pol\nunique_subject = no\n"
                    "copy_extensions = none\n"
                    "[pol]\ncommonName = supplied\norganizationName = optional\n"
                    % (self.db, self.db, self.db))

    def leaf(self, dir, name, cn, dns=(), ips=(), kind="rsa", client=False,
             dates=None, org=None):
        """Sign a new leaf certificate: CN cn, SANs dns + ips (none: no SAN
        extension), serverAuth or (client=True) clientAuth; dates =
        (start, end) as YYYYMMDDHHMMSSZ for a certificate outside its validity
        period. Writes dir/name.pem (leaf then this CA: a full chain) and
        dir/name.key; returns a Cert."""
        key = os.path.join(dir, name + ".key")
        csr = os.path.join(dir, name + ".csr")
        leaf = os.path.join(dir, name + ".leaf.pem")
        ext = os.path.join(dir, name + ".ext")
        genkey(key, kind)
        subj = ("/O=%s/CN=%s" % (org, cn)) if org else "/CN=%s" % cn
        openssl("req", "-new", "-key", key, "-subj", subj, "-out", csr)
        ku = "digitalSignature" + (",keyEncipherment" if kind == "rsa" else "")
        lines = ["basicConstraints=CA:FALSE", "keyUsage=critical," + ku,
                 "extendedKeyUsage=" + ("clientAuth" if client else "serverAuth")]
        sans = ["DNS:" + d for d in dns] + ["IP:" + i for i in ips]
        if sans:
            lines.append("subjectAltName=" + ",".join(sans))
        with open(ext, "w") as f:
            f.write("\n".join(lines) + "\n")
        if dates:
            openssl("ca", "-batch", "-config", self.ca_conf, "-cert", self.cert,
                    "-keyfile", self.key, "-in", csr, "-out", leaf, "-notext",
                    "-startdate", dates[0], "-enddate", dates[1], "-extfile", ext)
        else:
            openssl("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
                    "-set_serial", "0x" + os.urandom(8).hex(), "-days", "30",
                    "-extfile", ext, "-out", leaf)
        path = os.path.join(dir, name + ".pem")
        with open(path, "w") as out:
            out.write(open(leaf).read())
            out.write(open(self.cert).read())
        c = Cert(name, path, key, self, subj)
        c.leaf_only = leaf
        return c


class PKI:
    """Everything the TLS tests use, in one directory:

    ca, ca2           two unrelated private CAs (ECDSA keys)
    rsa, ecdsa        server leaves from ca: DNS localhost, tb.example, IP 127.0.0.1
    rsa2              another RSA leaf with the same names (a "renewed" cert)
    sni_a             DNS a.example
    sni_wild          DNS *.wild.example
    sni_exact         DNS exact.wild.example (beats the wildcard)
    sni_cn            no SAN, CN cn-only.example
    expired           from ca, same names as rsa, valid in 2020 only
    wronghost         from ca, DNS other.example only (no IP SAN)
    untrusted         from ca2, same names as rsa
    client1, client1_ec  client certs from ca, subject CN=client1,O=Example
    client_other      client cert from ca2, subject CN=intruder,O=Other
    """

    def __init__(self, dir):
        self.dir = str(dir)
        os.makedirs(self.dir, exist_ok=True)
        d = self.dir
        names = dict(dns=("localhost", "tb.example"), ips=("127.0.0.1",))
        self.ca = CA(d, "ca", cn="Tracebridge Test CA")
        self.ca2 = CA(d, "ca2", cn="Unrelated CA")
        self.rsa = self.ca.leaf(d, "rsa", "localhost", kind="rsa", **names)
        self.rsa2 = self.ca.leaf(d, "rsa2", "localhost", kind="rsa", **names)
        self.ecdsa = self.ca.leaf(d, "ecdsa", "localhost", kind="ec", **names)
        self.sni_a = self.ca.leaf(d, "sni_a", "a.example", dns=("a.example",), kind="ec")
        self.sni_wild = self.ca.leaf(d, "sni_wild", "wild", dns=("*.wild.example",), kind="ec")
        self.sni_exact = self.ca.leaf(d, "sni_exact", "exact.wild.example",
                                      dns=("exact.wild.example",), kind="ec")
        self.sni_cn = self.ca.leaf(d, "sni_cn", "cn-only.example", kind="ec")
        self.expired = self.ca.leaf(d, "expired", "localhost", kind="ec",
                                    dates=("20200101000000Z", "20200102000000Z"), **names)
        self.wronghost = self.ca.leaf(d, "wronghost", "other.example",
                                      dns=("other.example",), kind="ec")
        self.untrusted = self.ca2.leaf(d, "untrusted", "localhost", kind="ec", **names)
        self.client1 = self.ca.leaf(d, "client1", "client1", org="Example",
                                    kind="rsa", client=True)
        self.client1_ec = self.ca.leaf(d, "client1_ec", "client1", org="Example",
                                       kind="ec", client=True)
        self.client_other = self.ca2.leaf(d, "client_other", "intruder", org="Other",
                                          kind="ec", client=True)
        self.garbage = os.path.join(d, "garbage.pem")
        with open(self.garbage, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")


def make_pki(dir):
    return PKI(dir)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """One PKI for the whole test session (key generation takes a few seconds)."""
    return PKI(tmp_path_factory.mktemp("pki"))


if __name__ == "__main__":
    # tls_certs.py DIR: make the PKI there (for trying things by hand)
    import sys
    p = PKI(sys.argv[1])
    for k, v in sorted(vars(p).items()):
        if isinstance(v, Cert):
            print("%-13s %s %s" % (k, v.cert, v.key))
