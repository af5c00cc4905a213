"""his — the hospital backbone: patients, encounters, queue tickets, departments, staff, catalogues,
orders, admission/transfer/discharge, beds, pharmacy stock. Depends only on core."""
