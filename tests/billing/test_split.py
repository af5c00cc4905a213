"""The BHYT split on worked examples, amounts written out (bhyt-xml.md §6; rules in billing/rules.py)."""

from datetime import date
from decimal import Decimal

import pytest

from billing import rules, split
from billing.split import Facts, Line

D = Decimal


def line(name, quantity, price, *, insurer_price="same", ratio=100, in_list=True):
    price = D(price)
    return Line(name, D(quantity), price, price if insurer_price == "same" else insurer_price, ratio, in_list)


def facts(day=date(2026, 3, 10), care="outpatient", level="provincial", code="4", route="correct", **extra):
    return Facts(day=day, care=care, facility_level=level, insured=True, benefit_code=code, route=route, **extra)


def amounts(result):
    return (result.cost, result.in_scope, result.insurer, result.copay, result.self_pay)


def test_outpatient_under_the_threshold_is_fully_covered():
    # 2026-03-10: rule BHYT-2025-07, base salary 2,340,000, 15 % = 351,000.
    lines = [line("Khám Nội", 1, 42100), line("Tổng phân tích tế bào máu", 1, 46200),
             line("Glucose", 1, 21500), line("Paracetamol 500 mg", 20, 350)]
    result = split.compute(lines, facts())
    assert result.rule.code == "BHYT-2025-07"
    assert result.benefit == 100
    assert amounts(result) == (D("116800.00"), D("116800.00"), D("116800.00"), D("0.00"), D("0.00"))
    assert "116.800 ₫" in str(result.reasons[-1]) and "351.000 ₫" in str(result.reasons[-1])


def test_card_of_80_percent_above_the_threshold():
    result = split.compute([line("Khám Nội", 1, 42100), line("CT sọ não", 1, 522000)], facts())
    assert result.benefit == 80
    assert amounts(result) == (D("564100.00"), D("564100.00"), D("451280.00"), D("112820.00"), D("0.00"))
    assert [(x.insurer, x.copay) for x in result.lines] == [(D("33680.00"), D("8420.00")),
                                                             (D("417600.00"), D("104400.00"))]


def test_emergency_is_on_route_even_at_central_level_and_self_referral_is_not():
    lines = [line("Ngày giường Hồi sức tích cực", 2, 752000), line("Thuốc", 1, 496000)]
    emergency = split.compute(lines, facts(care="inpatient", level="central", route="emergency"))
    assert emergency.benefit == 80
    assert amounts(emergency) == (D("2000000.00"), D("2000000.00"), D("1600000.00"), D("400000.00"), D("0.00"))
    self_referred = split.compute(lines, facts(care="inpatient", level="central", route="self_referred"))
    assert self_referred.benefit == 32  # 80 % × 40 %
    assert amounts(self_referred) == (D("2000000.00"), D("2000000.00"), D("640000.00"), D("1360000.00"), D("0.00"))


def test_a_drug_outside_the_list_is_paid_by_the_patient():
    lines = [line("Thuốc ngoài danh mục", 1, 100000, in_list=False), line("Siêu âm Doppler tim", 1, 400000)]
    result = split.compute(lines, facts())
    assert result.benefit == 80
    assert amounts(result) == (D("500000.00"), D("400000.00"), D("320000.00"), D("80000.00"), D("100000.00"))
    assert result.patient == D("180000.00")
    assert not result.lines[0].in_scope_item and result.lines[0].self_pay == D("100000.00")


def test_inpatient_with_a_ratio_drug_on_a_95_percent_card():
    lines = [line("Ngày giường Nội khoa loại 1", 5, 199100), line("Thuốc thanh toán 50 %", 1, 200000, ratio=50)]
    result = split.compute(lines, facts(care="inpatient", code="3"))
    assert result.benefit == 95
    # in scope 995,500 + 200,000 × 50 % = 1,095,500; fund 95 % = 1,040,725; co-pay 54,775; outside 100,000.
    assert amounts(result) == (D("1195500.00"), D("1095500.00"), D("1040725.00"), D("54775.00"), D("100000.00"))


def test_a_code_1_card_lifts_the_payment_ratio():
    result = split.compute([line("Thuốc thanh toán 50 %", 1, 400000, ratio=50)], facts(code="1"))
    assert result.lines[0].payment_ratio == 100
    assert amounts(result) == (D("400000.00"), D("400000.00"), D("400000.00"), D("0.00"), D("0.00"))


def test_on_demand_service_fund_pays_up_to_its_own_price():
    result = split.compute([line("Khám theo yêu cầu", 1, 150000, insurer_price=D("42100"))], facts())
    assert amounts(result) == (D("150000.00"), D("42100.00"), D("42100.00"), D("0.00"), D("107900.00"))


def test_base_salary_changes_the_threshold_by_date():
    lines = [line("Nội soi dạ dày", 1, 300000)]
    before = split.compute(lines, facts(day=date(2024, 6, 30)))  # 1,800,000 × 15 % = 270,000
    after = split.compute(lines, facts(day=date(2024, 7, 1)))  # 2,340,000 × 15 % = 351,000
    assert (before.rule.code, before.benefit, before.insurer) == ("BHYT-2023-07", 80,
                                                                   D("240000.00"))
    assert (after.rule.code, after.benefit, after.insurer) == ("BHYT-2024-07", 100, D("300000.00"))


def test_the_law_of_1_july_2025_covers_self_referred_outpatients_at_provincial_level():
    lines = [line("CT lồng ngực", 1, 600000)]
    before = split.compute(lines, facts(day=date(2025, 6, 30), route="self_referred"))
    after = split.compute(lines, facts(day=date(2025, 7, 1), route="self_referred"))
    assert (before.rule.code, before.benefit, before.insurer, before.copay) == ("BHYT-2024-07", 0, D("0.00"),
                                                                               D("600000.00"))
    assert (after.rule.code, after.benefit, after.insurer, after.copay) == ("BHYT-2025-07", 80, D("480000.00"),
                                                                           D("120000.00"))


def test_self_referred_below_the_threshold_gets_only_the_reduced_rate():
    result = split.compute([line("Khám", 1, 100000)], facts(care="inpatient", level="central", route="self_referred"))
    assert (result.benefit, result.insurer, result.copay) == (32, D("32000.00"), D("68000.00"))


def test_co_payment_ceiling_after_five_continuous_years():
    # Ceiling 6 × 2,340,000 = 14,040,000; 13,000,000 already co-paid this year; this stay's co-pay 2,000,000.
    lines = [line("Phẫu thuật", 1, 10000000)]
    result = split.compute(lines, facts(care="inpatient", continuous_since=date(2020, 1, 1),
                                        copaid_this_year=D("13000000")))
    assert (result.insurer, result.copay) == (D("8960000.00"), D("1040000.00"))
    without = split.compute(lines, facts(care="inpatient", copaid_this_year=D("13000000")))
    assert (without.insurer, without.copay) == (D("8000000.00"), D("2000000.00"))


def test_co_payment_exemption_paper_gives_100_percent():
    result = split.compute([line("Phẫu thuật", 1, 10000000)], facts(exempt_since=date(2026, 2, 1)))
    assert (result.benefit, result.insurer, result.copay) == (100, D("10000000.00"), D("0.00"))


def test_uninsured_pays_everything_with_the_reason():
    result = split.compute([line("Khám", 1, 42100)], Facts(day=date(2026, 3, 10), care="outpatient",
                                                            facility_level="provincial", uninsured_reason="hết hạn"))
    assert amounts(result) == (D("42100.00"), D("0.00"), D("0.00"), D("0.00"), D("42100.00"))
    assert result.reasons[-1] == "hết hạn"


def test_credit_lines_take_back_their_share():
    result = split.compute([line("CT", 1, 522000), line("CT (hoàn)", -1, 522000), line("Khám", 1, 42100)], facts())
    assert (result.cost, result.benefit, result.insurer) == (D("42100.00"), 100, D("42100.00"))


def test_no_rule_before_the_table():
    with pytest.raises(rules.RuleError) as err:
        rules.rule_for(date(2020, 12, 31))
    assert err.value.code == "no_rule"
    assert str(err.value) == "No BHYT rule covers 31/12/2020."
