"""Realistic analyser messages for the tests and the benchmark."""

from __future__ import annotations

from lis.demo import CBC

VALUES = ["6.5", "4.1", "1.8", "0.4", "0.15", "0.05", "63.0", "27.7", "6.2", "2.3", "0.8", "4.85", "142", "42.1",
          "86.8", "29.3", "337", "13.1", "42.0", "245", "9.8", "12.1", "0.24", "25.3", "62"]


def cbc_oru(barcode: str, control_id: str, *, version: str = "2.3.1", values=None, status: str = "F",
            sender: str = "BC-5380|Mindray", sep: str = "\r", name: str = "^Nguyễn Văn An", charset: str = "UNICODE"):
    """A Mindray BC style ORU^R01: settings rows (IS), then 25 NM results with LOINC and local codes."""
    values = values or VALUES
    lines = [f"MSH|^~\\&|{sender}|||20261201083000||ORU^R01|{control_id}|P|{version}||||||{charset}",
             f"PID|1||MRN001^^^BV_DEMO^MR||{name}||19800101|Male",
             "PV1|1",
             f"OBR|1||{barcode}|00001^Automated Count^99MRC|||20261201080000|||||||||||||||||HM||||||||admin",
             "OBX|1|IS|08001^Take Mode^99MRC||O||||||F",
             "OBX|2|IS|08002^Blood Mode^99MRC||W||||||F"]
    for n, ((code, _name, loinc, unit, low, high, *_rest), value) in enumerate(zip(CBC, values, strict=True),
                                                                              start=3):
        flags = "H~A" if code == "WBC" and float(value.replace(",", ".")) > 10 else "~N"
        reference = f"{low}-{high}" if low and high else ""
        lines.append(f"OBX|{n}|NM|{loinc}^{code}^LN||{value}|{unit}|{reference}|{flags}|||{status}|||20261201082500")
    lines.append("ZRI|scattergram omitted")
    return (sep.join(lines) + sep).encode("utf-8")


def glucose_oru(barcode: str, control_id: str, value: str = "5.4", *, test: str = "1", status: str = "F"):
    """A Mindray BS style ORU^R01: one test per message, numeric test number in OBX-3, barcode in OBR-2."""
    lines = [f"MSH|^~\\&|BS-480|Mindray|||20261201090000||ORU^R01|{control_id}|P|2.3.1||||0||ASCII",
             "PID|1||||||",
             f"OBR|1|{barcode}|17|^||20261201085000|20261201085000",
             f"OBX|1|NM|{test}|Glucose|{value}|mmol/L|3.9-6.4|N|||{status}|||20261201085500",
             "NTE|1||Mau hoi vang\\.br\\da kiem tra lai"]
    return ("\r".join(lines) + "\r").encode("ascii")


def oul_r22(barcode: str, control_id: str, results: dict[str, str], *, version: str = "2.5.1"):
    """A LAW style OUL^R22 from middleware: SPM + SAC carry the container id."""
    lines = [f"MSH|^~\\&|cobas infinity|Roche|VNHIS|LIS|20261201091500+0700||OUL^R22^OUL_R22|{control_id}|P|"
             f"{version}|||NE|AL||UNICODE UTF-8",
             "PID|1||MRN001^^^BV_DEMO^MR||Nguyễn^An^Văn||19800101|M",
             f"SPM|1|{barcode}&ROCHE||SER|||||||P",
             f"SAC|||{barcode}|||||||R1|3",
             "OBR|1|||ELEC^Electrolytes^L"]
    for n, (loinc, value) in enumerate(results.items(), start=1):
        lines.append(f"OBX|{n}|NM|{loinc}^^LN||{value}|mmol/L|||||F|||20261201091000+0700")
    return ("\r".join(lines) + "\r").encode("utf-8")
