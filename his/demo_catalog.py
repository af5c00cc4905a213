"""A small, realistic demo catalogue: services with prices, common drugs, a few supplies, and the
ICD-10 codes of common diagnoses.

Everything here is illustrative demo data written for vnhis: the prices are of the right order
but are not an official price list, the service BHYT codes only have the shape of QĐ 2010 codes,
and the drugs carry no registration number. The Vietnamese diagnosis names were written by us
(no third-party translation is used); the codes and English names are WHO ICD-10's. Running
`seed` again changes nothing.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.audit import Actor
from his.catalog import save_item, search_form
from his.models.catalog import Drug, Icd10Code, Service, Supply

VALID_FROM = date(2026, 1, 1)
ICD_VERSION = "DEMO"
ICD_VALID_FROM = date(2000, 1, 1)

# code, BHYT code, name, group, unit, BHYT price, fee price, on-demand price
SERVICES = [
    ("KB.NOI", "02.1896", "Khám Nội", "Khám bệnh", "lần", 42100, 42100, 150000),
    ("KB.NGOAI", "02.1897", "Khám Ngoại", "Khám bệnh", "lần", 42100, 42100, 150000),
    ("KB.NHI", "02.1898", "Khám Nhi", "Khám bệnh", "lần", 42100, 42100, 150000),
    ("KB.SAN", "02.1899", "Khám Phụ sản", "Khám bệnh", "lần", 42100, 42100, 150000),
    ("KB.TMH", "02.1900", "Khám Tai Mũi Họng", "Khám bệnh", "lần", 42100, 42100, 150000),
    ("KB.MAT", "02.1901", "Khám Mắt", "Khám bệnh", "lần", 42100, 42100, 150000),
    ("KB.RHM", "02.1902", "Khám Răng Hàm Mặt", "Khám bệnh", "lần", 42100, 42100, 150000),
    ("XN.CTM", "22.0120.1370", "Tổng phân tích tế bào máu ngoại vi (bằng máy đếm laser)", "Xét nghiệm", "lần",
     46200, 46200, 90000),
    ("XN.GLU", "23.0075.1494", "Định lượng Glucose [Máu]", "Xét nghiệm", "lần", 21500, 21500, 40000),
    ("XN.URE", "23.0166.1494", "Định lượng Urê máu [Máu]", "Xét nghiệm", "lần", 21500, 21500, 40000),
    ("XN.CREA", "23.0051.1494", "Định lượng Creatinin [Máu]", "Xét nghiệm", "lần", 21500, 21500, 40000),
    ("XN.AST", "23.0019.1493", "Đo hoạt độ AST (GOT) [Máu]", "Xét nghiệm", "lần", 21500, 21500, 40000),
    ("XN.ALT", "23.0020.1493", "Đo hoạt độ ALT (GPT) [Máu]", "Xét nghiệm", "lần", 21500, 21500, 40000),
    ("XN.CHOL", "23.0041.1506", "Định lượng Cholesterol toàn phần [Máu]", "Xét nghiệm", "lần", 26900, 26900, 50000),
    ("XN.TG", "23.0158.1506", "Định lượng Triglycerid [Máu]", "Xét nghiệm", "lần", 26900, 26900, 50000),
    ("XN.HBA1C", "23.0083.1523", "Định lượng HbA1c [Máu]", "Xét nghiệm", "lần", 101000, 101000, 180000),
    ("XN.NT", "23.0206.1596", "Tổng phân tích nước tiểu (bằng máy tự động)", "Xét nghiệm", "lần",
     27400, 27400, 50000),
    ("XN.DGD", "23.0058.1487", "Điện giải đồ (Na, K, Cl) [Máu]", "Xét nghiệm", "lần", 29000, 29000, 55000),
    ("XN.CRP", "23.0050.1498", "Định lượng CRP [Máu]", "Xét nghiệm", "lần", 53600, 53600, 100000),
    ("XN.HBSAG", "24.0117.1618", "HBsAg test nhanh", "Xét nghiệm", "lần", 53600, 53600, 90000),
    ("XN.NS1", "24.0228.1650", "Dengue virus NS1Ag test nhanh", "Xét nghiệm", "lần", 130000, 130000, 180000),
    ("XN.ABO", "22.0280.1269", "Định nhóm máu hệ ABO, Rh(D) (kỹ thuật phiến đá)", "Xét nghiệm", "lần",
     39100, 39100, 70000),
    ("CDHA.XQN", "18.0119.0028", "Chụp X-quang ngực thẳng (số hóa 1 phim)", "Chẩn đoán hình ảnh", "lần",
     65400, 65400, 120000),
    ("CDHA.SAOB", "18.0001.0001", "Siêu âm ổ bụng (gan mật, tụy, lách, thận, bàng quang)", "Chẩn đoán hình ảnh",
     "lần", 43900, 43900, 150000),
    ("CDHA.SATIM", "18.0025.0004", "Siêu âm Doppler tim", "Chẩn đoán hình ảnh", "lần", 233000, 233000, 400000),
    ("CDHA.CTSN", "18.0168.0041", "Chụp CT sọ não không tiêm thuốc cản quang", "Chẩn đoán hình ảnh", "lần",
     522000, 522000, 900000),
    ("CDHA.CTNGUC", "18.0200.0041", "Chụp CT lồng ngực không tiêm thuốc cản quang", "Chẩn đoán hình ảnh", "lần",
     522000, 522000, 900000),
    ("TDCN.ECG", "02.0085.1778", "Điện tim thường", "Thăm dò chức năng", "lần", 32800, 32800, 60000),
    ("TDCN.NSDD", "20.0080.0133", "Nội soi thực quản - dạ dày - tá tràng", "Thăm dò chức năng", "lần",
     244000, 244000, 500000),
    ("PT.KHAU", "10.9001.0558", "Khâu vết thương phần mềm tổn thương nông chiều dài < 10 cm", "Thủ thuật", "lần",
     180000, 180000, 300000),
    ("PT.THAYBANG", "03.3911.0200", "Thay băng vết thương chiều dài ≤ 15 cm", "Thủ thuật", "lần",
     57600, 57600, 100000),
    ("GB.NOI", "K02.1902", "Ngày giường bệnh Nội khoa loại 1", "Ngày giường", "ngày", 199100, 199100, 500000),
    ("GB.NGOAI", "K03.1903", "Ngày giường bệnh Ngoại khoa loại 1", "Ngày giường", "ngày", 213700, 213700, 550000),
    ("GB.HSTC", "K01.1901", "Ngày giường Hồi sức tích cực", "Ngày giường", "ngày", 752000, 752000, 1200000),
    ("DV.PHONGVIP", None, "Phòng điều trị theo yêu cầu (1 giường)", "Ngày giường", "ngày", None, 800000, 800000),
]

# code, BHYT code, name, active ingredient, strength, dosage form, route, unit, narcotic, psychotropic,
# prescription-only, price
DRUGS = [
    ("T.PARA500", None, "Paracetamol 500 mg", "Paracetamol", "500 mg", "Viên nén", "Uống", "viên",
     False, False, False, 350),
    ("T.PARA1G", None, "Paracetamol 1 g/100 ml", "Paracetamol", "1 g/100 ml", "Dung dịch tiêm truyền",
     "Tiêm truyền tĩnh mạch", "chai", False, False, True, 18500),
    ("T.IBU400", None, "Ibuprofen 400 mg", "Ibuprofen", "400 mg", "Viên nén bao phim", "Uống", "viên",
     False, False, False, 900),
    ("T.AMOX500", None, "Amoxicillin 500 mg", "Amoxicillin", "500 mg", "Viên nang cứng", "Uống", "viên",
     False, False, True, 1100),
    ("T.AMOCLA", None, "Amoxicillin + Acid clavulanic 875 mg/125 mg", "Amoxicillin + Acid clavulanic",
     "875 mg + 125 mg", "Viên nén bao phim", "Uống", "viên", False, False, True, 7800),
    ("T.CEFU500", None, "Cefuroxim 500 mg", "Cefuroxim", "500 mg", "Viên nén bao phim", "Uống", "viên",
     False, False, True, 6500),
    ("T.CEFTRI1G", None, "Ceftriaxon 1 g", "Ceftriaxon", "1 g", "Bột pha tiêm", "Tiêm tĩnh mạch", "lọ",
     False, False, True, 24000),
    ("T.AZI500", None, "Azithromycin 500 mg", "Azithromycin", "500 mg", "Viên nén bao phim", "Uống", "viên",
     False, False, True, 9500),
    ("T.CIPRO500", None, "Ciprofloxacin 500 mg", "Ciprofloxacin", "500 mg", "Viên nén bao phim", "Uống", "viên",
     False, False, True, 1500),
    ("T.METRO250", None, "Metronidazol 250 mg", "Metronidazol", "250 mg", "Viên nén", "Uống", "viên",
     False, False, True, 400),
    ("T.OME20", None, "Omeprazol 20 mg", "Omeprazol", "20 mg", "Viên nang tan trong ruột", "Uống", "viên",
     False, False, True, 700),
    ("T.ESO40", None, "Esomeprazol 40 mg", "Esomeprazol", "40 mg", "Bột pha tiêm", "Tiêm tĩnh mạch", "lọ",
     False, False, True, 45000),
    ("T.DOMP10", None, "Domperidon 10 mg", "Domperidon", "10 mg", "Viên nén", "Uống", "viên",
     False, False, True, 300),
    ("T.AMLO5", None, "Amlodipin 5 mg", "Amlodipin", "5 mg", "Viên nén", "Uống", "viên", False, False, True, 450),
    ("T.LOSA50", None, "Losartan 50 mg", "Losartan", "50 mg", "Viên nén bao phim", "Uống", "viên",
     False, False, True, 1200),
    ("T.BISO25", None, "Bisoprolol 2,5 mg", "Bisoprolol", "2,5 mg", "Viên nén bao phim", "Uống", "viên",
     False, False, True, 1500),
    ("T.ATOR20", None, "Atorvastatin 20 mg", "Atorvastatin", "20 mg", "Viên nén bao phim", "Uống", "viên",
     False, False, True, 1300),
    ("T.METF850", None, "Metformin 850 mg", "Metformin", "850 mg", "Viên nén bao phim", "Uống", "viên",
     False, False, True, 600),
    ("T.GLIC30", None, "Gliclazid 30 mg", "Gliclazid", "30 mg", "Viên nén giải phóng có kiểm soát", "Uống",
     "viên", False, False, True, 1800),
    ("T.INSU30", None, "Insulin người trộn 30/70", "Insulin người (30/70)", "100 IU/ml x 10 ml",
     "Hỗn dịch tiêm", "Tiêm dưới da", "lọ", False, False, True, 105000),
    ("T.SALBU", None, "Salbutamol 2,5 mg/2,5 ml", "Salbutamol", "2,5 mg/2,5 ml", "Dung dịch khí dung",
     "Khí dung", "ống", False, False, True, 4500),
    ("T.PRED5", None, "Prednisolon 5 mg", "Prednisolon", "5 mg", "Viên nén", "Uống", "viên",
     False, False, True, 200),
    ("T.MPRED40", None, "Methylprednisolon 40 mg", "Methylprednisolon", "40 mg", "Bột pha tiêm",
     "Tiêm tĩnh mạch", "lọ", False, False, True, 32000),
    ("T.LORA10", None, "Loratadin 10 mg", "Loratadin", "10 mg", "Viên nén", "Uống", "viên", False, False, False, 300),
    ("T.CLOP75", None, "Clopidogrel 75 mg", "Clopidogrel", "75 mg", "Viên nén bao phim", "Uống", "viên",
     False, False, True, 2500),
    ("T.ASP81", None, "Acid acetylsalicylic 81 mg", "Acid acetylsalicylic", "81 mg", "Viên nén bao tan trong ruột",
     "Uống", "viên", False, False, True, 250),
    ("T.NACL09", None, "Natri clorid 0,9% 500 ml", "Natri clorid", "0,9% x 500 ml", "Dung dịch tiêm truyền",
     "Tiêm truyền tĩnh mạch", "chai", False, False, True, 9800),
    ("T.GLU5", None, "Glucose 5% 500 ml", "Glucose", "5% x 500 ml", "Dung dịch tiêm truyền",
     "Tiêm truyền tĩnh mạch", "chai", False, False, True, 10500),
    ("T.RINGER", None, "Ringer lactat 500 ml", "Natri clorid + Kali clorid + Calci clorid + Natri lactat",
     "500 ml", "Dung dịch tiêm truyền", "Tiêm truyền tĩnh mạch", "chai", False, False, True, 11000),
    ("T.MORPH10", None, "Morphin 10 mg/ml", "Morphin hydroclorid", "10 mg/1 ml", "Dung dịch tiêm", "Tiêm",
     "ống", True, False, True, 6500),
    ("T.DIAZ5", None, "Diazepam 5 mg", "Diazepam", "5 mg", "Viên nén", "Uống", "viên", False, True, True, 300),
    ("T.OXY", "40.17", "Oxy dược dụng", "Oxy", "99,5%", "Khí nén", "Đường hô hấp", "lít", False, False, True, 10),
]

# code, name, unit, price (their BHYT codes are assigned by the BHXH portal, so none here)
SUPPLIES = [
    ("VT.BT5", "Bơm tiêm nhựa 5 ml", "cái", 1200),
    ("VT.KL22", "Kim luồn tĩnh mạch 22G", "cái", 9500),
    ("VT.DTD", "Dây truyền dịch", "bộ", 6000),
    ("VT.GTVK", "Găng tay phẫu thuật vô khuẩn", "đôi", 4500),
    ("VT.GAC", "Gạc phẫu thuật vô khuẩn 10 x 10 cm", "gói", 3000),
    ("VT.CHI30", "Chỉ khâu Nylon 3/0", "sợi", 25000),
    ("VT.FOLEY16", "Ống thông tiểu Foley 16Fr", "cái", 18000),
]

# code, Vietnamese name (ours), WHO English name, flags. The flags show the TT 06 rules on a few
# codes; on the real list they come from the annex.
ICD10 = [
    ("J00", "Viêm mũi họng cấp (cảm thường)", "Acute nasopharyngitis [common cold]", {}),
    ("J02.9", "Viêm họng cấp, không đặc hiệu", "Acute pharyngitis, unspecified", {}),
    ("J03.9", "Viêm amidan cấp, không đặc hiệu", "Acute tonsillitis, unspecified", {}),
    ("J06.9", "Nhiễm trùng đường hô hấp trên cấp, không đặc hiệu", "Acute upper respiratory infection, unspecified",
     {}),
    ("J18.9", "Viêm phổi, không đặc hiệu", "Pneumonia, unspecified", {}),
    ("J20.9", "Viêm phế quản cấp, không đặc hiệu", "Acute bronchitis, unspecified", {}),
    ("J44.9", "Bệnh phổi tắc nghẽn mạn tính, không đặc hiệu", "Chronic obstructive pulmonary disease, unspecified",
     {}),
    ("J45.9", "Hen phế quản, không đặc hiệu", "Asthma, unspecified", {}),
    ("I10", "Tăng huyết áp vô căn (nguyên phát)", "Essential (primary) hypertension", {}),
    ("I20.9", "Cơn đau thắt ngực, không đặc hiệu", "Angina pectoris, unspecified", {}),
    ("I21.9", "Nhồi máu cơ tim cấp, không đặc hiệu", "Acute myocardial infarction, unspecified", {}),
    ("I50.9", "Suy tim, không đặc hiệu", "Heart failure, unspecified", {}),
    ("I63.9", "Nhồi máu não, không đặc hiệu", "Cerebral infarction, unspecified", {}),
    ("I64", "Đột quỵ, không xác định là chảy máu hay nhồi máu", "Stroke, not specified as haemorrhage or infarction",
     {}),
    ("E11", "Đái tháo đường týp 2", "Type 2 diabetes mellitus", {"not_for_use": True}),
    ("E11.9", "Đái tháo đường týp 2, không có biến chứng", "Type 2 diabetes mellitus without complications", {}),
    ("E78.5", "Tăng lipid máu, không đặc hiệu", "Hyperlipidaemia, unspecified", {}),
    ("E03.9", "Suy giáp, không đặc hiệu", "Hypothyroidism, unspecified", {}),
    ("G63.2", "Bệnh đa dây thần kinh do đái tháo đường", "Diabetic polyneuropathy",
     {"dagger_asterisk": "*", "not_principal": True}),
    ("K21.9", "Bệnh trào ngược dạ dày - thực quản không có viêm thực quản",
     "Gastro-oesophageal reflux disease without oesophagitis", {}),
    ("K29.7", "Viêm dạ dày, không đặc hiệu", "Gastritis, unspecified", {}),
    ("K35.8", "Viêm ruột thừa cấp, khác và không đặc hiệu", "Acute appendicitis, other and unspecified", {}),
    ("K74.6", "Xơ gan, khác và không đặc hiệu", "Other and unspecified cirrhosis of liver", {}),
    ("K80.2", "Sỏi túi mật không có viêm túi mật", "Calculus of gallbladder without cholecystitis", {}),
    ("A09.9", "Viêm dạ dày ruột và viêm đại tràng không rõ nguồn gốc", "Gastroenteritis and colitis of unspecified "
     "origin", {}),
    ("A15.0", "Lao phổi, xác định bằng soi đờm có hoặc không có nuôi cấy",
     "Tuberculosis of lung, confirmed by sputum microscopy with or without culture", {}),
    ("A97.0", "Sốt xuất huyết Dengue không có dấu hiệu cảnh báo", "Dengue without warning signs", {}),
    ("A97.1", "Sốt xuất huyết Dengue có dấu hiệu cảnh báo", "Dengue with warning signs", {}),
    ("A97.2", "Sốt xuất huyết Dengue nặng", "Severe Dengue", {}),
    ("B18.19", "Viêm gan virus B mạn, không có tác nhân delta, giai đoạn khác và không đặc hiệu",
     "Chronic viral hepatitis B without delta-agent : other and unspecified phase", {}),
    ("N18.9", "Bệnh thận mạn, không đặc hiệu", "Chronic kidney disease, unspecified", {}),
    ("N20.0", "Sỏi thận", "Calculus of kidney", {}),
    ("N39.0", "Nhiễm trùng đường tiết niệu, vị trí không xác định", "Urinary tract infection, site not specified", {}),
    ("N40", "Tăng sản tuyến tiền liệt", "Hyperplasia of prostate", {"sex": "male"}),
    ("M10.9", "Bệnh gút, không đặc hiệu", "Gout, unspecified", {}),
    ("M17.9", "Thoái hóa khớp gối, không đặc hiệu", "Gonarthrosis, unspecified", {}),
    ("M54.5", "Đau vùng thắt lưng", "Low back pain", {}),
    ("G43.9", "Đau nửa đầu, không đặc hiệu", "Migraine, unspecified", {}),
    ("R50.9", "Sốt, không đặc hiệu", "Fever, unspecified", {"discouraged_principal": True}),
    ("R51", "Đau đầu", "Headache", {"discouraged_principal": True}),
    ("F32.9", "Giai đoạn trầm cảm, không đặc hiệu", "Depressive episode, unspecified", {}),
    ("F41.1", "Rối loạn lo âu lan tỏa", "Generalized anxiety disorder", {}),
    ("H10.9", "Viêm kết mạc, không đặc hiệu", "Conjunctivitis, unspecified", {}),
    ("H66.9", "Viêm tai giữa, không đặc hiệu", "Otitis media, unspecified", {}),
    ("L30.9", "Viêm da, không đặc hiệu", "Dermatitis, unspecified", {}),
    ("O80.9", "Đẻ thường một thai, không đặc hiệu", "Single spontaneous delivery, unspecified", {"sex": "female"}),
    ("Z34.9", "Theo dõi thai bình thường, không đặc hiệu", "Supervision of normal pregnancy, unspecified",
     {"sex": "female"}),
    ("S06.0", "Chấn động não", "Concussion", {}),
    ("S52.5", "Gãy đầu dưới xương quay", "Fracture of lower end of radius", {}),
    ("R99", "Các nguyên nhân tử vong khác không xác định rõ", "Other ill-defined and unspecified causes of mortality",
     {"cause_of_death_only": True}),
]


def _money(value) -> Decimal | None:
    return None if value is None else Decimal(value)


def seed(session: Session, actor: Actor) -> dict:
    """Create what is missing (running it again changes nothing); returns how many items it created."""
    created = {"services": 0, "drugs": 0, "supplies": 0, "icd10": 0}
    for code, bhyt, name, group, unit, bhyt_price, fee, on_demand in SERVICES:
        _item, status, _n = save_item(
            session, Service, {"code": code, "bhyt_code": bhyt, "name": name, "group": group, "unit": unit},
            [("bhyt", _money(bhyt_price)), ("fee", _money(fee)), ("on_demand", _money(on_demand))], VALID_FROM)
        created["services"] += status == "created"
    for code, bhyt, name, inn, strength, form, route, unit, narcotic, psycho, rx, price in DRUGS:
        _item, status, _n = save_item(
            session, Drug, {"code": code, "bhyt_code": bhyt, "name": name, "active_ingredient": inn,
                            "strength": strength, "dosage_form": form, "route": route, "unit": unit,
                            "country": "Việt Nam", "is_narcotic": narcotic, "is_psychotropic": psycho,
                            "is_prescription_only": rx},
            [(None, _money(price))], VALID_FROM)
        created["drugs"] += status == "created"
    for code, name, unit, price in SUPPLIES:
        _item, status, _n = save_item(session, Supply, {"code": code, "name": name, "unit": unit},
                                      [(None, _money(price))], VALID_FROM)
        created["supplies"] += status == "created"
    known = set(session.scalars(select(Icd10Code.code).where(Icd10Code.version == ICD_VERSION)))
    for code, name_vi, name_en, flags in ICD10:
        if code not in known:
            session.add(Icd10Code(version=ICD_VERSION, code=code, name_vi=name_vi, name_en=name_en,
                                  name_folded=search_form(f"{name_vi} {name_en}"), block=None, chapter=None,
                                  valid_from=ICD_VALID_FROM, active=True, **flags))
            created["icd10"] += 1
    session.flush()
    if any(created.values()):
        audit.record(session, actor, "catalog.demo_seed", None, created)
    return created
