"""Synthetic Vietnamese patients for the demo and the benchmarks: plausible names, CCCD numbers whose
digits agree with the birth date and sex, phones, BHYT cards. Deterministic for a given seed."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

# Frequencies roughly follow the well-known distribution (Nguyễn about 38 %, Trần 11 %, Lê 9.5 %…).
SURNAMES = [("Nguyễn", 38), ("Trần", 11), ("Lê", 9.5), ("Phạm", 7), ("Hoàng", 5), ("Huỳnh", 4), ("Phan", 4),
            ("Vũ", 3.9), ("Võ", 3.5), ("Đặng", 2.1), ("Bùi", 2), ("Đỗ", 1.4), ("Hồ", 1.3), ("Ngô", 1.3),
            ("Dương", 1), ("Lý", 0.5), ("Đinh", 0.5), ("Trương", 0.5), ("Lâm", 0.4), ("Mai", 0.4)]
MIDDLE_MALE = ["Văn", "Văn", "Văn", "Hữu", "Đức", "Minh", "Quang", "Thành", "Công", "Xuân", "Ngọc", "Anh", "Tuấn",
               "Gia", "Hoàng", "Trọng"]
MIDDLE_FEMALE = ["Thị", "Thị", "Thị", "Ngọc", "Thu", "Thanh", "Minh", "Phương", "Hồng", "Kim", "Mỹ", "Bảo",
                 "Khánh", "Diệu"]
GIVEN_MALE = ["An", "Anh", "Bình", "Cường", "Dũng", "Duy", "Đạt", "Đức", "Giang", "Hải", "Hiếu", "Hòa", "Hùng",
              "Huy", "Khang", "Khoa", "Kiên", "Lâm", "Long", "Lộc", "Minh", "Nam", "Nghĩa", "Phong", "Phúc", "Quân",
              "Quang", "Sơn", "Tài", "Thắng", "Thành", "Thịnh", "Toàn", "Trung", "Tuấn", "Tùng", "Việt", "Vinh"]
GIVEN_FEMALE = ["An", "Anh", "Ánh", "Bích", "Châu", "Chi", "Diệp", "Dung", "Duyên", "Giang", "Hà", "Hạnh", "Hằng",
                "Hiền", "Hoa", "Hương", "Huyền", "Lan", "Liên", "Linh", "Loan", "Mai", "My", "Nga", "Ngọc", "Nhung",
                "Oanh", "Phương", "Quyên", "Tâm", "Thảo", "Thủy", "Trang", "Trinh", "Uyên", "Vân", "Vy", "Yến"]
# Pre-2025 province codes used in CCCD numbers (001 Hà Nội, 079 TP HCM…).
PROVINCES = [("001",), ("079",), ("031",), ("048",), ("092",), ("036",), ("038",), ("040",), ("026",), ("027",),
             ("034",), ("035",), ("074",), ("075",), ("089",)]
BHYT_GROUPS = [("DN", "4", 30), ("HS", "4", 10), ("SV", "4", 5), ("GD", "4", 25), ("HT", "3", 10),
               ("CN", "3", 3), ("HC", "4", 5)]
STREETS = ["Lê Lợi", "Trần Hưng Đạo", "Nguyễn Trãi", "Hai Bà Trưng", "Lý Thường Kiệt", "Điện Biên Phủ",
           "Nguyễn Huệ", "Phan Đình Phùng", "Quang Trung", "Cách Mạng Tháng Tám"]


@dataclass
class FakePatient:
    full_name: str
    sex: str
    birth_date: date | None
    birth_year: int
    national_id: str | None
    phone: str | None
    bhyt_number: str | None
    address_text: str


def _pick(rng: random.Random, weighted):
    names, weights = zip(*[(w[:-1] if len(w) > 2 else w[0], w[-1]) for w in weighted], strict=True)
    return rng.choices(names, weights)[0]


def patients(count: int, seed: int = 2026, start: int = 0):
    """Yield `count` synthetic patients; the serial number keeps CCCD, phone and BHXH numbers unique."""
    rng = random.Random(seed)
    for serial in range(start, start + count):
        sex = "female" if rng.random() < 0.52 else "male"
        surname = _pick(rng, SURNAMES)
        middle = rng.choice(MIDDLE_FEMALE if sex == "female" else MIDDLE_MALE)
        given = rng.choice(GIVEN_FEMALE if sex == "female" else GIVEN_MALE)
        born = date(1935, 1, 1) + timedelta(days=rng.randrange(0, (date(2026, 6, 30) - date(1935, 1, 1)).days))
        year_only = rng.random() < 0.08  # common for elderly patients without papers
        has_cccd = born.year <= 2012 and rng.random() < 0.85
        century = (0 if born.year < 2000 else 2) + (1 if sex == "female" else 0)
        # Province and the last six digits both come from the serial, so numbers never collide.
        province = PROVINCES[serial % len(PROVINCES)][0]
        national_id = f"{province}{century}{born.year % 100:02d}{serial // len(PROVINCES):06d}" if has_cccd else None
        phone = f"09{serial % 100_000_000:08d}" if rng.random() < 0.7 else None
        bhyt = None
        if rng.random() < 0.9:
            group, level = (("TE", "1") if born.year >= 2020 else _pick(rng, BHYT_GROUPS))
            bhyt = f"{group}{level}{rng.choice(['01', '79', '31', '48'])}{serial % 10_000_000_000:010d}"
        yield FakePatient(f"{surname} {middle} {given}", sex, None if year_only else born, born.year, national_id,
                          phone, bhyt, f"Số {rng.randrange(1, 300)} {rng.choice(STREETS)}")
