"""HL7 v2 (ER7) reading and writing for the laboratory: a fast, tolerant parse of the fields that
decide the answer, and the messages vnhis sends (ACK, QCK/DSR, RSP, ORM, OML).

Why our own parse instead of hl7apy: an hl7apy object parse of a 25-OBX ORU runs at 15–20 msg/s
on this machine (it builds and validates an object per element), the throughput goal is 1,000
msg/s. Splitting on the message's own delimiters and unescaping only the values we read is
~100× faster; the checks that decide AA/AE/AR (MSH-9, MSH-12, MSH-18, NM values, required
fields) are written out here, in HL7's terms (table 0357 codes, ERR locations).
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from lis.observations import Observation, SpecimenResults

SUPPORTED_VERSIONS = ("2.3.1", "2.4", "2.5", "2.5.1")
RESULT_MESSAGES = {("ORU", "R01"), ("OUL", "R22")}
QUERY_MESSAGES = {("QRY", "Q02"), ("QBP", "Q11")}
ACCEPTED_ACKS = {("ACK", "Q03"), ("ACK", "O01"), ("ACK", "O21"), ("ACK", "R01"), ("ACK", "")}
CHARSETS = {"": "utf-8", "ASCII": "ascii", "8859/1": "latin-1", "UNICODE": "utf-8", "UNICODE UTF-8": "utf-8",
            "UTF-8": "utf-8"}
ACCEPT_ACK_MODES = ("AL", "ER", "SU")  # MSH-15 values asking for a commit accept
VIETNAM = timezone(timedelta(hours=7))
NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
DTM = re.compile(r"(\d{4,14})(\.\d+)?([+-]\d{4})?")


class Hl7Error(Exception):
    """A message we answer negatively: MSA-1 code, table 0357 code, ERR location, text for the sender."""

    def __init__(self, ack: str, code: str, text: str, location: str = ""):
        super().__init__(text)
        self.ack, self.code, self.text, self.location = ack, code, text, location


@dataclass(frozen=True)
class Delimiters:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"


DEFAULT = Delimiters()


def unescape(value: str, d: Delimiters = DEFAULT) -> str:
    if d.escape not in value:
        return value
    out, i, n = [], 0, len(value)
    while i < n:
        ch = value[i]
        if ch != d.escape:
            out.append(ch)
            i += 1
            continue
        end = value.find(d.escape, i + 1)
        if end < 0:
            out.append(value[i:])
            break
        seq = value[i + 1:end]
        simple = {"F": d.field, "S": d.component, "T": d.subcomponent, "R": d.repetition, "E": d.escape}
        if seq in simple:
            out.append(simple[seq])
        elif seq == ".br":
            out.append("\n")
        elif seq.startswith("X") and len(seq) % 2 == 1:
            try:
                out.append(bytes.fromhex(seq[1:]).decode("utf-8", "replace"))
            except ValueError:
                out.append(value[i:end + 1])
        # \H\ \N\ \.sp\ and other formatting commands carry no data: dropped
        i = end + 1
    return "".join(out)


def escape(value: str, d: Delimiters = DEFAULT) -> str:
    value = value.replace(d.escape, f"{d.escape}E{d.escape}")
    for ch, code in ((d.field, "F"), (d.component, "S"), (d.subcomponent, "T"), (d.repetition, "R")):
        value = value.replace(ch, f"{d.escape}{code}{d.escape}")
    return value.replace("\r", f"{d.escape}.br{d.escape}").replace("\n", f"{d.escape}.br{d.escape}")


@dataclass
class Segment:
    name: str
    fields: list[str]  # fields[n] is field n (for MSH, fields[1] is MSH-1, the separator)
    d: Delimiters

    def raw(self, n: int) -> str:
        return self.fields[n] if n < len(self.fields) else ""

    def repetitions(self, n: int) -> list[str]:
        return list(self.raw(n).split(self.d.repetition))

    def component(self, n: int, c: int = 1, rep: int = 0) -> str:
        """Field n, component c (1-based) of repetition rep, unescaped; '' when absent."""
        value = self.raw(n)
        if not value:
            return ""
        if self.d.repetition in value:
            reps = value.split(self.d.repetition)
            value = reps[rep] if rep < len(reps) else ""
        if self.d.component in value:
            parts = value.split(self.d.component)
            value = parts[c - 1] if c - 1 < len(parts) else ""
        elif c != 1:
            return ""
        return unescape(value, self.d)

    def components(self, n: int, rep: int = 0) -> list[str]:
        """All components of field n (repetition rep), unescaped; [''] when absent."""
        value = self.raw(n)
        if self.d.repetition in value:
            reps = value.split(self.d.repetition)
            value = reps[rep] if rep < len(reps) else ""
        return [unescape(part, self.d) for part in value.split(self.d.component)]

    def value(self, n: int) -> str:
        """The whole field unescaped (components kept with their separator)."""
        return unescape(self.raw(n), self.d)


@dataclass
class Message:
    raw: bytes
    segments: list[Segment]
    d: Delimiters
    charset: str

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    @property
    def sender(self) -> str:
        return f"{self.msh.component(3)}^{self.msh.component(4)}"

    @property
    def control_id(self) -> str:
        return self.msh.value(10)

    @property
    def type(self) -> tuple[str, str]:
        return self.msh.component(9, 1), self.msh.component(9, 2)

    @property
    def version(self) -> str:
        return self.msh.component(12)

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    def find(self, name: str) -> Segment | None:
        return next((s for s in self.segments if s.name == name), None)


def normalise(frame: bytes) -> bytes:
    """Segments end with CR; sloppy senders use LF or CRLF. Trailing separators are dropped."""
    if b"\n" in frame:
        frame = frame.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    return frame.strip(b"\r \x00")


def read_header(frame: bytes) -> tuple[Delimiters, list[bytes]]:
    """Delimiters from MSH-1/MSH-2 and the MSH fields as bytes, before the charset is known."""
    if not frame.startswith(b"MSH") or len(frame) < 8:
        raise Hl7Error("AR", "100", "message does not start with an MSH segment", "MSH")
    sep = frame[3:4]
    enc_end = frame.find(sep, 4)
    encoding = frame[4:enc_end if enc_end > 0 else None].split(b"\r", 1)[0]
    chars = encoding.decode("latin-1")
    if sep.isalnum() or sep in (b"\r", b" ") or len(chars) not in (4, 5) or len(set(chars + sep.decode("latin-1"))) \
            != len(chars) + 1 or any(c.isalnum() or c.isspace() for c in chars):
        raise Hl7Error("AE", "102", "unusable encoding characters in MSH-1/MSH-2", "MSH^1^2")
    d = Delimiters(sep.decode("latin-1"), chars[0], chars[1], chars[2], chars[3] if len(chars) > 3 else "&")
    first = frame.split(b"\r", 1)[0]
    return d, [b"MSH", sep, *first[4:].split(sep)]


def parse(frame: bytes) -> Message:
    """Parse a complete frame (without MLLP bytes). Raises Hl7Error with the answer to give."""
    frame = normalise(frame)
    d, header = read_header(frame)
    declared = header[18].decode("latin-1").strip().upper() if len(header) > 18 else ""
    declared = declared.split(d.repetition)[0]
    charset = CHARSETS.get(declared)
    if charset is None:
        raise Hl7Error("AE", "103", f"character set {declared!r} in MSH-18 is not supported", "MSH^1^18")
    try:
        text = frame.decode(charset)
    except UnicodeDecodeError:
        raise Hl7Error("AE", "102", f"bytes not valid in the declared character set {declared or 'UTF-8'}",
                       "MSH^1^18") from None
    segments = []
    for line in text.split("\r"):
        if not line.strip():
            continue
        name = line[:3]
        fields = ["MSH", d.field, *line[4:].split(d.field)] if name == "MSH" else line.split(d.field)
        if len(name) != 3 or not name.isalnum() or (len(line) > 3 and line[3] != d.field):
            raise Hl7Error("AE", "100", f"segment {len(segments) + 1} is not an HL7 segment", f"{name[:3]}")
        segments.append(Segment(name, fields, d))
    return Message(frame, segments, d, charset)


def check_header(msg: Message, supported: set[tuple[str, str]]) -> None:
    msh = msg.msh
    if not msg.control_id:
        raise Hl7Error("AE", "101", "MSH-10 message control id is missing", "MSH^1^10")
    kind, event = msg.type
    if not kind:
        raise Hl7Error("AE", "101", "MSH-9 message type is missing", "MSH^1^9")
    if (kind, event) not in supported:
        known_kind = any(k == kind for k, _e in supported)
        raise Hl7Error("AR", "201" if known_kind else "200", f"message type {kind}^{event} is not supported",
                       "MSH^1^9")
    if msh.component(11) not in ("P", "T", "D", ""):
        raise Hl7Error("AR", "202", f"processing id {msh.component(11)!r} is not supported", "MSH^1^11")
    if msg.version not in SUPPORTED_VERSIONS:
        raise Hl7Error("AR", "203", f"version {msg.version or '(empty)'} is not supported", "MSH^1^12")


@functools.lru_cache(maxsize=4096)  # a message's results share one or two times
def parse_time(value: str) -> datetime | None:
    """DTM: YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]; without an offset it is Vietnam time."""
    value = value.strip()
    if not value:
        return None
    tz = VIETNAM
    match = DTM.fullmatch(value)
    if not match:
        raise ValueError(value)
    digits, _fraction, offset = match.groups()
    if offset:
        sign = 1 if offset[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])))
    digits = digits.ljust(14, "0")
    return datetime(int(digits[:4]), int(digits[4:6]) or 1, int(digits[6:8]) or 1, int(digits[8:10]),
                    int(digits[10:12]), int(digits[12:14]), tzinfo=tz).astimezone(UTC)


def format_time(moment: datetime) -> str:
    return moment.astimezone(VIETNAM).strftime("%Y%m%d%H%M%S+0700")


def _obx(seg: Segment, index: int) -> Observation:
    # Written out on the field list rather than through Segment.component: 25 of these per message
    # are most of the parse. Same reading as component(): first repetition, then component, unescaped.
    d = seg.d
    f = seg.fields if len(seg.fields) > 14 else seg.fields + [""] * (15 - len(seg.fields))
    rep, comp, esc = d.repetition, d.component, d.escape
    read = f[2] + f[3] + f[4] + f[5] + f[6] + f[7] + f[11] + f[14]
    if esc in read or rep in read:
        return _obx_escaped(seg, f, index)
    # the usual row: nothing escaped, no repetition, so splitting is the whole reading
    ident = f[3].split(comp)
    value_type = f[2].split(comp, 1)[0].upper()
    raw = f[5]
    if value_type in ("TX", "FT", "ST"):
        value = raw
    elif value_type == "SN":
        value = "".join(raw.split(comp)[:4])
    elif value_type in ("CE", "CWE"):
        coded = raw.split(comp)
        value = (coded[1] if len(coded) > 1 else "") or coded[0]
    else:
        value = raw.split(comp, 1)[0]
    location = f"OBX^{index}"
    value, observed = _checked(value_type, value, f[14].split(comp, 1)[0], ident[0], location)
    code = ident[0]
    n = len(ident)
    text = ident[1] if n > 1 else ""
    alt = tuple(c for c in (ident[3] if n > 3 else "", text) if c)
    flags = _flags(f[8], d) if f[8] else []
    return Observation(index, code, alt, text or f[4].split(comp, 1)[0], value_type or "ST", value,
                       f[6].split(comp, 1)[0], f[7], flags, (f[11].split(comp, 1)[0] or "F").upper(), observed,
                       [], location)


def _checked(value_type: str, value: str, time_text: str, code: str, location: str) -> tuple[str, datetime | None]:
    """The checks both OBX readings share: an NM value is a number, OBX-14 a time, OBX-3 present."""
    if value_type == "NM":
        value = value.strip()
        if value and not NUMBER.fullmatch(value):
            raise Hl7Error("AE", "102", f"OBX-5 value {value[:20]!r} is not a number (NM)", f"{location}^5")
    try:
        observed = parse_time(time_text)
    except ValueError:
        raise Hl7Error("AE", "102", "OBX-14 is not a date/time", f"{location}^14") from None
    if not code:
        raise Hl7Error("AE", "101", "OBX-3 observation identifier is missing", f"{location}^3")
    return value, observed


def _flags(raw: str, d: Delimiters) -> list[str]:
    if d.escape in raw:
        return [flag for flag in (unescape(r, d).split(d.component, 1)[0] for r in raw.split(d.repetition)) if flag]
    return [flag for flag in (r.split(d.component, 1)[0] for r in raw.split(d.repetition)) if flag]


def _obx_escaped(seg: Segment, f: list[str], index: int) -> Observation:
    d = seg.d
    rep, comp, esc = d.repetition, d.component, d.escape

    def parts(raw: str) -> list[str]:
        if rep in raw:
            raw = raw.split(rep, 1)[0]
        return [unescape(p, d) for p in raw.split(comp)] if esc in raw else raw.split(comp)

    def first(raw: str) -> str:
        if rep in raw:
            raw = raw.split(rep, 1)[0]
        if comp in raw:
            raw = raw.split(comp, 1)[0]
        return unescape(raw, d) if esc in raw else raw

    ident = parts(f[3])  # code ^ text ^ system ^ alternate code …
    value_type = first(f[2]).upper()
    if value_type in ("TX", "FT", "ST"):
        value = unescape(f[5], d)
    elif value_type == "SN":
        value = "".join(parts(f[5])[:4])  # <^2.0, ^1^:^128
    elif value_type in ("CE", "CWE"):
        coded = parts(f[5])
        value = (coded[1] if len(coded) > 1 else "") or coded[0]
    else:
        value = first(f[5])
    location = f"OBX^{index}"
    value, observed = _checked(value_type, value, first(f[14]), ident[0], location)
    code = ident[0]
    # the alternate identifier, then the text (some analysers put their own code there: 6690-2^WBC^LN)
    alt = tuple(c for c in (ident[3] if len(ident) > 3 else "", ident[1] if len(ident) > 1 else "") if c)
    flags = [flag for flag in (unescape(r, d).split(comp, 1)[0] for r in f[8].split(rep)) if flag] if f[8] else []
    return Observation(index=index, code=code, alt_codes=alt, name=(ident[1] if len(ident) > 1 else "")
                       or first(f[4]), value_type=value_type or "ST", value=value, unit=first(f[6]),
                       reference_range=unescape(f[7], d), flags=flags, status=(first(f[11]) or "F").upper(),
                       observed_at=observed, location=location)


def results_of(msg: Message) -> list[SpecimenResults]:
    """Group OBX under their specimen (OBR, or SPM/SAC for OUL^R22); NTE attaches to the OBX before
    it; Z-segments and anything else are skipped without breaking the grouping."""
    groups: list[SpecimenResults] = []
    current: SpecimenResults | None = None
    last_obx: Observation | None = None
    spm_ids: dict[str, str] = {}
    obx_count = 0
    for seg in msg.segments[1:]:
        if seg.name == "SPM":
            spm_ids = {"SPM-2": seg.component(2, 1) or seg.component(2, 2)}
            current = None
        elif seg.name == "SAC":
            spm_ids["SAC-3"] = seg.component(3)
            if current is not None:
                current.candidates["SAC-3"] = seg.component(3)
        elif seg.name == "OBR":
            ids = {**spm_ids, "OBR-3": seg.component(3), "OBR-2": seg.component(2)}
            current = SpecimenResults({k: v for k, v in ids.items() if v})
            groups.append(current)
            last_obx = None
        elif seg.name == "OBX":
            obx_count += 1
            if current is None:
                current = SpecimenResults({k: v for k, v in spm_ids.items() if v})
                groups.append(current)
            last_obx = _obx(seg, obx_count)
            if last_obx.value_type in ("IS", "ED"):
                continue  # analyser settings ("Take Mode") and histograms are not results
            current.observations.append(last_obx)
        elif seg.name == "NTE" and last_obx is not None:
            last_obx.notes.append(seg.value(3))
    return groups


# --- what we send ---------------------------------------------------------------------------

_counter = iter(range(1, 1 << 62))


def new_control_id() -> str:
    return f"VN{datetime.now(UTC).strftime('%y%m%d%H%M%S')}{next(_counter):06d}"


def build(segments: list[list[str]], d: Delimiters = DEFAULT) -> bytes:
    """Segments as lists of already-encoded field values (MSH starts at MSH-2)."""
    lines = []
    for seg in segments:
        if seg[0] == "MSH":
            lines.append("MSH" + d.field + d.field.join(seg[1:]))
        else:
            lines.append(d.field.join(seg))
    return ("\r".join(lines) + "\r").encode("utf-8")


def msh(kind: str, version: str, *, sender=("VNHIS", "LIS"), receiver=("", ""), control_id: str | None = None,
        d: Delimiters = DEFAULT) -> list[str]:
    enc = d.component + d.repetition + d.escape + d.subcomponent
    return ["MSH", enc, sender[0], sender[1], receiver[0], receiver[1], format_time(datetime.now(UTC)), "",
            kind, control_id or new_control_id(), "P", version, "", "", "", "", "", "UNICODE UTF-8"]


def ack(received: Message | None, code: str, error: Hl7Error | None = None) -> bytes:
    """The original-mode ACK (or, when the sender asked for it in MSH-15, the commit accept CA/CE/CR)."""
    d = received.d if received is not None else DEFAULT
    version = received.version if received is not None and received.version in SUPPORTED_VERSIONS else "2.5.1"
    event = received.type[1] if received is not None else ""
    kind = f"ACK{d.component}{event}" + (f"{d.component}ACK" if version.startswith("2.5") else "")
    receiver = (received.msh.raw(3), received.msh.raw(4)) if received is not None else ("", "")
    sender = (received.msh.raw(5) or "VNHIS", received.msh.raw(6) or "LIS") if received is not None \
        else ("VNHIS", "LIS")
    if received is not None and received.msh.component(15) in ACCEPT_ACK_MODES:
        code = {"AA": "CA", "AE": "CE", "AR": "CR"}[code]
    control = escape(received.control_id, d) if received is not None else ""
    segments = [msh(kind, version, sender=sender, receiver=receiver, d=d), ["MSA", code, control]]
    if error is not None:
        segments[1].append(escape(error.text[:80], d))
        if version.startswith("2.5"):
            segments.append(["ERR", "", error.location.replace("^", d.component), f"{error.code}{d.component}"
                             f"{d.component}HL70357", "E", "", "", "", escape(error.text, d)])
        else:
            parts = (error.location.split("^") + ["", "", ""])[:3]
            location = d.component.join(parts)
            segments.append(["ERR", f"{location}{d.component}{error.code}{d.subcomponent}"
                                    f"{d.subcomponent}HL70357"])
    return build(segments, d)
