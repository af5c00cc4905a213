"""A C-STORE SCP that receives each instance with pynetdicom exactly as `vnhis pacs` does (same AE settings,
same server and socket classes, the same Part 10 bytes; a large data set written to a temporary file as it
arrives) and answers success without storing anything: the protocol layer's own ceiling.

    .venv/bin/python scripts/bench/dicom_noop_scp.py PORT      # used by dicom_store.py --ceiling
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pynetdicom import evt  # noqa: E402

from pacs import part10  # noqa: E402
from pacs.scp import Node  # noqa: E402
from pacs.store import IncomingFile  # noqa: E402
from pacs.transport import Handler, Server  # noqa: E402


def receive_only(event) -> int:
    request = event.request
    if (spilled := getattr(request.DataSet, "file", None)) is not None:
        spilled.close()
        spilled.path.unlink()
    else:
        part10.header(request.AffectedSOPClassUID, request.AffectedSOPInstanceUID, event.context.transfer_syntax,
                      event.assoc.requestor.ae_title) + request.DataSet.getvalue()
    return 0x0000


def main() -> None:
    ae = Node(session_factory=None, storage_root=Path("unused"), ae_title="VNHIS").build_ae()
    server = ae.make_server(("127.0.0.1", int(sys.argv[1])), evt_handlers=[(evt.EVT_C_STORE, receive_only)],
                            server_class=Server, request_handler=Handler)
    with tempfile.TemporaryDirectory() as folder:
        server.dataset_file = lambda *_request: IncomingFile(Path(folder), b"")
        server.serve_forever()


if __name__ == "__main__":
    main()
