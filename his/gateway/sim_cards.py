"""The people the gateway simulator knows, one per case the desk must handle.

Dates are relative to the simulator's day so the demo keeps working. The CCCD numbers and names
match the QR codes used in the tests and listed in his/gateway/README.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta


@dataclass(frozen=True)
class SimCard:
    number: str
    national_id: str
    full_name: str
    birth: date
    sex: str  # as the portal writes it: Nam / Nữ
    facility: str  # MA_DKBD
    valid_from: date
    valid_to: date
    benefit_level: str
    five_years_since: date | None = None
    area: str = ""
    replaced_by: SimCard | None = None  # a second card code issued to the same person


def seeded(today: date) -> list[SimCard]:
    day = timedelta(days=1)
    newborn_birth = today - 10 * day
    new_card = SimCard("HC4010100000003", "001185000003", "Phạm Thị Hoa", date(1985, 5, 20), "Nữ", "01001",
                       today - 5 * day, today + 360 * day, "80")
    return [
        # A valid card, legacy 15-character layout.
        SimCard("DN4010123456789", "001090123456", "Nguyễn Văn An", date(1990, 1, 1), "Nam", "01001",
                today - 200 * day, today + 165 * day, "80", five_years_since=date(2021, 1, 1)),
        # A valid card in the 10-digit layout printed since 2021.
        SimCard("7901234567", "079190001234", "Trần Thị Mai", date(1990, 8, 15), "Nữ", "79001",
                today - 100 * day, today + 265 * day, "95"),
        # An expired card.
        SimCard("HT3010000000002", "001040123456", "Lê Văn Cụ", date(1940, 1, 1), "Nam", "01001",
                today - 400 * day, today - 31 * day, "95"),
        # Two card codes: the old one ended yesterday, the new one is valid on the visit date.
        SimCard("GD4010100000003", "001185000003", "Phạm Thị Hoa", date(1985, 5, 20), "Nữ", "01001",
                today - 370 * day, today - day, "80", replaced_by=new_card),
        new_card,
        # A newborn's temporary card (TE1 + province; MA_DKBD = province + 000).
        SimCard("TE1010000000005", "001226000005", "Con bà Đỗ Thị Lan", newborn_birth, "Nam", "01000",
                newborn_birth, newborn_birth + 6 * 365 * day, "100"),
    ]
