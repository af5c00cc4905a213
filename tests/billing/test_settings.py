"""Billing settings (one clear line per bad value) and why a card shown does not count."""

from datetime import date
from types import SimpleNamespace

import pytest

from billing import bills, settings
from core.config import ConfigError
from tests.conftest import make_config


def _load(tmp_path, **extra):
    return settings.load(make_config(tmp_path, extra=extra))


def test_defaults_and_bad_values(tmp_path):
    conf = _load(tmp_path)
    assert (conf.facility_level, conf.facility_code, conf.webhook_secret) == ("provincial", None, None)
    cases = [({"VNHIS_BILLING_FACILITY_LEVEL": "huyen"},
              "VNHIS_BILLING_FACILITY_LEVEL must be one of central, provincial, district, got 'huyen'"),
             ({"VNHIS_BILLING_FACILITY_CODE": "7900"},
              "VNHIS_BILLING_FACILITY_CODE must be a 5-character facility code (MA_CSKCB), got '7900'"),
             ({"VNHIS_BILLING_BANK_BIN": "97043"}, "VNHIS_BILLING_BANK_BIN must be the bank's 6-digit NAPAS BIN, "
                                                   "got '97043'"),
             ({"VNHIS_BILLING_WEBHOOK_SECRET": "short"},
              "VNHIS_BILLING_WEBHOOK_SECRET must have at least 16 characters")]
    for extra, message in cases:
        with pytest.raises(ConfigError) as err:
            _load(tmp_path, **extra)
        assert str(err.value) == message


def _encounter(number, valid_from=date(2026, 1, 1), valid_to=date(2026, 12, 31), level="4"):
    card = SimpleNamespace(number=number, valid_from=valid_from, valid_to=valid_to, benefit_level=level)
    return SimpleNamespace(bhyt_card=card)


def test_card_problems():
    day = date(2026, 12, 2)
    assert bills.card_problem(_encounter("DN4010123456789"), day) is None
    assert bills.card_problem(_encounter("0123456789", level="4"), day) is None  # the 10-digit BHXH number
    assert str(bills.card_problem(_encounter("DN40101234"), day)) == "The BHYT card number «DN40101234» is malformed."
    assert str(bills.card_problem(_encounter("DN4010123456789", valid_to=date(2026, 11, 30)), day)) == \
        "The BHYT card expired on 30/11/2026."
    assert str(bills.card_problem(_encounter("DN4010123456789", valid_from=date(2026, 12, 3)), day)) == \
        "The BHYT card is valid only from 03/12/2026."
    assert str(bills.card_problem(_encounter("0123456789", level=None), day)) == \
        "The card's benefit level is not known: check the card on the portal."
    assert str(bills.card_problem(SimpleNamespace(bhyt_card=None), day)) == "No BHYT card on the encounter."
