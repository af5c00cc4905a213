"""Time the BHYT split of one inpatient bill of 500 lines (the engine alone, no database).

    .venv/bin/python scripts/bench/billing_split.py [--lines 500] [--repeat 200]

Lines mix bed days, lab tests, imaging, in-list and ratio drugs, supplies and out-of-list items on an
80 % card with 5 continuous years (so the co-payment ceiling is checked too). Prints the median and
95th percentile of the time of one split.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import date
from decimal import Decimal

from billing import split
from billing.split import Facts, Line

KINDS = [(Decimal("199100"), 100, True), (Decimal("46200"), 100, True), (Decimal("522000"), 100, True),
         (Decimal("1100"), 100, True), (Decimal("24000"), 50, True), (Decimal("9500"), 100, True),
         (Decimal("150000"), 100, False)]


def lines(count: int) -> list[Line]:
    result = []
    for n in range(count):
        price, ratio, in_list = KINDS[n % len(KINDS)]
        result.append(Line(n, Decimal(1 + n % 3), price, price, ratio, in_list))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    bill = lines(args.lines)
    facts = Facts(day=date(2026, 12, 2), care="inpatient", facility_level="provincial", insured=True,
                  benefit_code="4", route="correct", continuous_since=date(2020, 1, 1),
                  copaid_this_year=Decimal("12000000"))
    times = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        result = split.compute(bill, facts)
        times.append(time.perf_counter() - started)
    times.sort()
    print(f"{args.lines} lines: total {result.cost:,.0f} đ, fund {result.insurer:,.0f} đ, "
          f"patient {result.patient:,.0f} đ")
    print(f"split: median {statistics.median(times) * 1000:.2f} ms, p95 {times[int(len(times) * 0.95)] * 1000:.2f} ms "
          f"({args.repeat} runs)")


if __name__ == "__main__":
    main()
