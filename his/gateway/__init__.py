"""The BHYT gateway: one client of the insurer's portal (client.py), the card checks made at
reception (cards.py) with their retry job (jobs.py), and a local simulator of the portal
(simulator.py, `vnhis gateway-sim`). The wire interface is described in README.md."""

from his.gateway import permissions as _permissions  # noqa: F401 (declares this area's permissions)
