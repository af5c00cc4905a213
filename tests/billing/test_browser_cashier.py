"""The cashier in headless Chromium against `vnhis serve` on PostgreSQL: open a bill, choose QR, the bank
simulator pays it and notifies the webhook, the page shows "paid" without a reload; the same notification
again changes nothing."""

import pytest
import requests
from sqlalchemy import func, select
from sqlalchemy.orm import close_all_sessions

from billing.banksim import BankSimulator
from billing.models import BankTransaction, Payment
from core.db import make_engine, make_session_factory
from tests.billing.conftest import make_visit
from tests.billing.test_payments import _charge
from tests.browser import log_in, server_env, serving, vnhis
from tests.his.conftest import make_clinic

pytestmark = pytest.mark.browser

PASSWORD = "mat-khau-thu-ngan"
SECRET = "b" * 32


@pytest.fixture
def cashier_server(committed_db_url, tmp_path):
    engine = make_engine(committed_db_url)
    with make_session_factory(engine)() as session:
        made = make_visit(session, make_clinic(session))
        _charge(session, made["encounter"], "CT", "CT sọ não", 1, 600000, group=2)
        session.commit()
        encounter_id = made["encounter"].id
    env = server_env(tmp_path, VNHIS_ENV="development", VNHIS_DATABASE_URL=committed_db_url,
                     VNHIS_SECRET_KEY="r" * 48, VNHIS_BILLING_BANK_BIN="970436",
                     VNHIS_BILLING_BANK_ACCOUNT="0071000123456", VNHIS_BILLING_WEBHOOK_SECRET=SECRET,
                     VNHIS_BILLING_FACILITY_CODE="79001")
    created = vnhis(env, "admin", "create-user", "thungan.mai", "--full-name", "Phạm Thị Mai",
                    "--role", "cashier", "--password-stdin", stdin=PASSWORD + "\n")
    assert created.returncode == 0, created.stderr
    for base in serving("serve", env):
        yield base, encounter_id
    close_all_sessions()
    engine.dispose()


def _counts(url):
    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        counts = (session.scalar(select(func.count()).select_from(Payment)),
                  session.scalar(select(func.count()).select_from(BankTransaction)))
    engine.dispose()
    return counts


def test_qr_payment_turns_the_page_paid_and_a_repeat_changes_nothing(cashier_server, page, committed_db_url):
    base, encounter_id = cashier_server
    log_in(page, base, "thungan.mai", PASSWORD)
    page.goto(f"{base}/billing/encounters/{encounter_id}")
    assert page.locator("#bill-due").inner_text().replace("\xa0", " ") == "120.000 ₫"
    page.click("#pay-qr")
    page.wait_for_selector("#qr-image svg")
    assert page.locator("#qr-status").get_attribute("data-status") == "open"
    loads = []
    page.on("load", lambda _page: loads.append(1))
    payload = page.locator("#qr-image").get_attribute("data-payload")

    with BankSimulator(f"{base}/billing/bank/notify", SECRET) as bank:
        paid = requests.post(f"{bank.url}/pay", json={"qr": payload}, timeout=30).json()  # the patient's app pays
        assert paid["webhook_status"] == 200 and paid["amount"] == 120000
        page.locator("#qr-paid").wait_for(state="visible", timeout=15000)
        assert page.locator("#qr-status").get_attribute("data-status") == "paid"
        assert page.locator("#qr-status").inner_text() == "Đã thanh toán"
        assert loads == []  # it came without a reload
        assert _counts(committed_db_url) == (1, 1)

        again = requests.post(f"{bank.url}/resend", json={"transaction_id": paid["transaction_id"]}, timeout=30).json()
        assert again["webhook_status"] == 200
        assert _counts(committed_db_url) == (1, 1)

    page.goto(f"{base}/billing/encounters/{encounter_id}")
    assert page.locator("#bill-status").get_attribute("data-status") == "paid"
    assert page.locator("#bill-payments tr").count() == 1
