"""InfluxDB sinks over TLS against real servers: influxd 1.x with ``https-enabled``, victoria-metrics
with ``-tls`` (the v2 API) and socat as a terminator that demands a client certificate.  A CA made
here for the test (openssl CLI) is trusted only through the sink's ``tls.ca_file``: with it delivery
works, without it delivery fails with a certificate error and every row waits in the journal."""

from __future__ import annotations

import ssl
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml

from gateway.config import InfluxV1Sink, InfluxV2Sink, SinkTls, load_site
from gateway.errors import ConfigError, SinkUnavailable
from gateway.journal import Journal
from gateway.sinks import Delivery, LineEncoder, make_writer
from tests.processes import Process, find_binary, free_port
from tests.servers import InfluxD, VictoriaMetrics
from tests.test_sinks import METER, delivering, eventually, polls

pytestmark = pytest.mark.services


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=30)


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all EC P-256, for a day."""
    d = tmp_path / "pki"
    d.mkdir()
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", d / "ca.key", "-out", d / "ca.pem", "-days", "1",
             "-subj", "/CN=pedf test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"),
                      ("client", "extendedKeyUsage=clientAuth")):
        (d / f"{name}.ext").write_text(f"{ext}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
                                       "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n")
        _openssl("req", *ec, "-keyout", d / f"{name}.key", "-out", d / f"{name}.csr", "-subj", f"/CN={name}")
        _openssl("x509", "-req", "-in", d / f"{name}.csr", "-CA", d / "ca.pem", "-CAkey", d / "ca.key",
                 "-CAcreateserial", "-out", d / f"{name}.pem", "-days", "1", "-extfile", d / f"{name}.ext")
    return {p.stem if p.suffix == ".pem" else p.stem + "_key": p for p in d.iterdir() if p.suffix in (".pem", ".key")}


def _trusting(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


class TlsInfluxD(InfluxD):
    """influxd 1.x serving its HTTP API over TLS (``https-enabled``, ``https-certificate``)."""

    def __init__(self, workdir: Path, cert: Path, key: Path, ca: Path) -> None:
        super().__init__(workdir)
        self.ca = ca
        text = self.config_path.read_text().replace(
            "  auth-enabled = false", f'  auth-enabled = false\n  https-enabled = true\n'
                                      f'  https-certificate = "{cert}"\n  https-private-key = "{key}"')
        self.config_path.write_text(text)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        with urllib.request.urlopen(self.url + "/ping", timeout=1, context=_trusting(self.ca)) as resp:
            return resp.status == 204

    def query(self, influxql: str, db: str | None = None) -> list[dict]:
        """InfluxQL through an opener that trusts the test's CA."""
        urllib.request.install_opener(urllib.request.build_opener(urllib.request.HTTPSHandler(
            context=_trusting(self.ca))))
        try:
            return super().query(influxql, db)
        finally:
            urllib.request.install_opener(None)  # type: ignore[arg-type]


class TlsVictoriaMetrics(VictoriaMetrics):
    def __init__(self, workdir: Path, cert: Path, key: Path) -> None:
        super().__init__(workdir)
        self.cert, self.key = cert, key

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [*super().command(), "-tls", f"-tlsCertFile={self.cert}", f"-tlsKeyFile={self.key}"]

    def ready(self) -> bool:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # the probe only: is it up yet
        with urllib.request.urlopen(self.url + "/health", timeout=1, context=ctx) as resp:
            return resp.status == 200


class MutualTlsTerminator(Process):
    """socat: TLS that demands a client certificate signed by the CA, then plain TCP to ``target``."""

    name = "socat"
    merge_output = True

    def __init__(self, workdir: Path, target_port: int, pki: dict[str, Path]) -> None:
        super().__init__(workdir)
        self.port, self.target_port, self.pki = free_port(), target_port, pki

    def command(self) -> list[str]:
        p = self.pki
        return [find_binary("socat"), f"OPENSSL-LISTEN:{self.port},bind=127.0.0.1,reuseaddr,fork,cert={p['server']},"
                f"key={p['server_key']},cafile={p['ca']},verify=1", f"TCP:127.0.0.1:{self.target_port}"]

    def ready(self) -> bool:
        import socket

        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True


async def _deliver(journal: Journal, sink: InfluxV1Sink | InfluxV2Sink, name: str, n: int) -> Delivery:
    delivery = Delivery(name, journal, make_writer(sink), LineEncoder(journal.series), max_age_s=0.05,
                        backoff_initial_s=0.05, backoff_max_s=0.2)
    async with delivering(delivery):
        await eventually(lambda: delivery.stats().backlog == 0 or delivery.stats().retries >= n)
    return delivery


async def test_v1_over_tls_needs_the_ca_and_loses_nothing_without_it(tmp_path: Path, pki: dict[str, Path]) -> None:
    with TlsInfluxD(tmp_path / "influxd", pki["server"], pki["server_key"], pki["ca"]) as server:
        server.create_database("pedf")
        untrusted = InfluxV1Sink(type="influxdb_v1", url=server.url, database="pedf")  # the system's CAs
        trusted = InfluxV1Sink(type="influxdb_v1", url=server.url, database="pedf", tls=SinkTls(ca_file=str(pki["ca"])))
        async with Journal(tmp_path / "j.db") as journal:
            sid = await journal.series_id(METER)
            for s in polls(sid, 30):
                await journal.append(s)
            failed = await _deliver(journal, untrusted, "influx", 2)
            assert failed.stats().sent_lines == 0 and journal.cursor("influx") == 0
            assert failed.stats().backlog == 30  # all of it waits in the journal
            assert "TLS certificate of 127.0.0.1" in (failed.stats().last_error or "")
            assert "set tls.ca_file" in (failed.stats().last_error or "")
            delivered = await _deliver(journal, trusted, "influx", 100)
            assert delivered.stats().backlog == 0
        assert len(server.query("SELECT * FROM meter", db="pedf")) == 30


async def test_v2_over_tls_to_victoria_metrics(tmp_path: Path, pki: dict[str, Path]) -> None:
    with TlsVictoriaMetrics(tmp_path / "vm", pki["server"], pki["server_key"]) as server:
        base = {"type": "influxdb_v2", "url": server.url, "org": "o", "bucket": "b", "token": "t0ken"}
        with pytest.raises(SinkUnavailable, match=r"TLS certificate of 127\.0\.0\.1.*not trusted.*set tls\.ca_file"):
            await make_writer(InfluxV2Sink(**base)).write(b"tls_probe v=1 1")
        writer = make_writer(InfluxV2Sink(**base, tls=SinkTls(ca_file=str(pki["ca"]))))
        await writer.write(b"tls_probe,via=tls v=2 1700000000000000000")
        await writer.close()
        ctx = _trusting(pki["ca"])

        def exported() -> bool:
            urllib.request.urlopen(server.url + "/internal/force_flush", context=ctx, timeout=5).close()
            query = server.url + "/api/v1/export?match[]=tls_probe_v"
            with urllib.request.urlopen(query, context=ctx, timeout=5) as resp:
                return b'"via":"tls"' in resp.read()

        await eventually(exported)


async def test_client_certificate_for_a_terminator_that_demands_one(tmp_path: Path, influxd: InfluxD,
                                                                    pki: dict[str, Path]) -> None:
    influxd.create_database("pedf")
    with MutualTlsTerminator(tmp_path / "socat", influxd.port, pki) as socat:
        url = f"https://127.0.0.1:{socat.port}"
        no_cert = make_writer(InfluxV1Sink(type="influxdb_v1", url=url, database="pedf",
                                           tls=SinkTls(ca_file=str(pki["ca"]))))
        with pytest.raises(SinkUnavailable) as info:
            await no_cert.write(b"m v=1 1")
        assert "CERTIFICATE_REQUIRED" in str(info.value)  # the terminator asked for a client certificate
        await no_cert.close()
        with_cert = make_writer(InfluxV1Sink(type="influxdb_v1", url=url, database="pedf", tls=SinkTls(
            ca_file=str(pki["ca"]), cert_file=str(pki["client"]), key_file=str(pki["client_key"]))))
        await with_cert.write(b"m,via=mtls v=2 1700000000000000000")
        await with_cert.close()
    assert influxd.query("SELECT * FROM m", db="pedf")[0]["via"] == "mtls"


def test_tls_section_errors_name_file_line_and_field(tmp_path: Path) -> None:
    site = {"site": {"name": "t"}, "parks": [{"name": "p", "grid_region": "east_china"}],
            "buildings": [{"name": "b", "park": "p", "floor_area_m2": 1}],
            "sinks": [{"type": "influxdb_v1", "url": "https://db.example:8086", "database": "pedf",
                       "tls": {"ca_file": str(tmp_path / "missing.pem")}},
                      {"type": "influxdb_v2", "name": "v2", "url": "http://db.example", "org": "o", "bucket": "b",
                       "token": "t", "tls": {}}]}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    with pytest.raises(ConfigError) as info:
        load_site(path)
    text = str(info.value)
    assert "sinks[0].tls.ca_file" in text and "no such file" in text, text
    assert "sinks[1]" in text and "tls applies to an https:// url" in text, text
    assert f"{path}:" in text
