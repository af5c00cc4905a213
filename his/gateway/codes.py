"""The portal's card-lookup result codes (maKetQua) and what each means at the desk.

UNCERTAIN [M]: the codes are recalled from vendors' integrations of the BHXH assessment portal
(cổng giám định BHYT), not read in an official specification; correct them here, in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask_babel import lazy_gettext as _l


@dataclass(frozen=True)
class ResultCode:
    code: str
    usable: bool  # the card can be used (maybe the new card the portal names)
    problem: str  # our code for the situation, kept on the card check
    message: object  # what the receptionist reads


_CODES = [
    ResultCode("000", True, "valid", _l("The card is valid.")),
    ResultCode("001", True, "valid_army", _l("Card managed by the Ministry of Defence's social insurance: check the "
                                             "card against an identity document.")),
    ResultCode("002", True, "valid_police", _l("Card managed by the Ministry of Public Security's social insurance: "
                                               "check the card against an identity document.")),
    ResultCode("003", True, "new_card", _l("The old card has expired but a new card was issued.")),
    ResultCode("004", True, "new_card_issued", _l("The card is still valid and a new card was issued.")),
    ResultCode("010", False, "expired", _l("The portal says the card has expired.")),
    ResultCode("050", False, "not_found", _l("The portal has no card with this number.")),
    ResultCode("051", False, "bad_number", _l("The portal says the card number is wrong.")),
    ResultCode("052", False, "bad_province", _l("The portal says the province code of the card (4th and 5th "
                                                "characters) is wrong.")),
    ResultCode("053", False, "bad_level", _l("The portal says the benefit code of the card (3rd character) is "
                                             "wrong.")),
    ResultCode("060", False, "wrong_name", _l("The name does not match the card on the portal: check the spelling "
                                              "against the card.")),
    ResultCode("061", False, "wrong_name", _l("The name does not match the card on the portal (the first letters "
                                              "agree): check the spelling against the card.")),
    ResultCode("070", False, "wrong_birth_date", _l("The birth date does not match the card on the portal: check it "
                                                    "against the card.")),
    ResultCode("110", False, "revoked", _l("The portal says the card was withdrawn.")),
    ResultCode("120", False, "stopped", _l("The portal says the card was reported as stopped (báo giảm).")),
]
CODES = {c.code: c for c in _CODES}
# Answers that say the portal itself failed: no verdict on the card, try again later.
SERVER_ERRORS = {"100", "101", "503"}
AUTH_ERRORS = {"401"}
BAD_REQUEST = {"205"}


def describe(code: str) -> ResultCode:
    """A code the table does not know is an unusable card with the portal's own words shown."""
    return CODES.get(code) or ResultCode(code, False, "other", _l("The portal refused the card (code %(code)s).",
                                                                  code=code))
