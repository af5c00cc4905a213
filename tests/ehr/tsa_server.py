"""A local RFC 3161 time-stamping authority over HTTP for the tests: it answers a TimeStampReq with a
token (CMS SignedData over a TSTInfo) signed by a TSA certificate of the test CA."""

from __future__ import annotations

import hashlib
import itertools
import threading
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from asn1crypto import cms, tsp
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

_SERIALS = itertools.count(1)


def token(request: tsp.TimeStampReq, cert, key) -> bytes:
    now = datetime.now(UTC).replace(microsecond=0)
    info = tsp.TSTInfo({"version": "v1", "policy": "1.3.6.1.4.1.99999.1", "serial_number": next(_SERIALS),
                        "message_imprint": request["message_imprint"], "gen_time": now,
                        "nonce": request["nonce"].native})
    attrs = cms.CMSAttributes([
        cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}),
        cms.CMSAttribute({"type": "signing_time", "values": [cms.Time({"utc_time": now})]}),
        cms.CMSAttribute({"type": "message_digest", "values": [hashlib.sha256(info.dump()).digest()]}),
    ])
    signature = key.sign(attrs.dump(), padding.PKCS1v15(), hashes.SHA256())
    der_cert = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    signed = cms.SignedData({
        "version": "v3", "digest_algorithms": [{"algorithm": "sha256"}],
        "encap_content_info": {"content_type": "tst_info", "content": info}, "certificates": [der_cert],
        "signer_infos": [{"version": "v1", "sid": cms.SignerIdentifier({"issuer_and_serial_number": {
            "issuer": der_cert.issuer, "serial_number": der_cert.serial_number}}),
            "digest_algorithm": {"algorithm": "sha256"}, "signed_attrs": attrs,
            "signature_algorithm": {"algorithm": "rsassa_pkcs1v15"}, "signature": signature}],
    })
    return cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump()


@contextmanager
def serving(cert, key):
    """Yield the TSA's URL; it runs in a thread until the block ends."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            request = tsp.TimeStampReq.load(self.rfile.read(int(self.headers["Content-Length"])))
            body = tsp.TimeStampResp({"status": {"status": "granted"},
                                      "time_stamp_token": cms.ContentInfo.load(token(request, cert, key))}).dump()
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/tsa"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
