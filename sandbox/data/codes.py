"""Curated code lists from the real terminologies the generated data uses."""

from __future__ import annotations

from dataclasses import dataclass

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "https://bluebutton.cms.gov/resources/codesystem/hcpcs"
CDT = "http://www.ada.org/cdt"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NDC = "http://hl7.org/fhir/sid/ndc"
NUCC = "http://nucc.org/provider-taxonomy"
CVX = "http://hl7.org/fhir/sid/cvx"
UCUM = "http://unitsofmeasure.org"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"

# v3-ActCode sensitivity codes the sandbox labels in meta.security (HRex consent #regular).
SENSITIVE_ACT_CODES = {
    "ETH": "substance abuse information sensitivity",
    "HIV": "HIV/AIDS information sensitivity",
    "PSY": "psychiatry information sensitivity",
    "STD": "sexually transmitted disease information sensitivity",
}


@dataclass(frozen=True)
class ConditionCode:
    """A condition coded in ICD-10-CM (claims) and SNOMED CT (clinical)."""

    icd10: str
    snomed: str
    display: str
    sensitivity: str | None = None


CHRONIC_CONDITIONS = (
    ConditionCode("E11.9", "44054006", "Type 2 diabetes mellitus without complications"),
    ConditionCode("I10", "38341003", "Essential (primary) hypertension"),
    ConditionCode("E78.5", "55822004", "Hyperlipidemia, unspecified"),
    ConditionCode("J45.909", "195967001", "Unspecified asthma, uncomplicated"),
    ConditionCode("E66.9", "414916001", "Obesity, unspecified"),
    ConditionCode("K21.9", "235595009", "Gastro-esophageal reflux disease without esophagitis"),
    ConditionCode("J44.9", "13645005", "Chronic obstructive pulmonary disease, unspecified"),
    ConditionCode("M54.50", "279039007", "Low back pain, unspecified"),
)
ACUTE_CONDITIONS = (
    ConditionCode("J06.9", "54150009", "Acute upper respiratory infection, unspecified"),
    ConditionCode("N39.0", "68566005", "Urinary tract infection, site not specified"),
    ConditionCode("J02.9", "405737000", "Acute pharyngitis, unspecified"),
    ConditionCode("S93.401A", "44465007", "Sprain of unspecified ligament of right ankle"),
    ConditionCode("R51.9", "25064002", "Headache, unspecified"),
)
SENSITIVE_CONDITIONS = (
    ConditionCode("F10.20", "7200002", "Alcohol dependence, uncomplicated", "ETH"),
    ConditionCode("F11.20", "75544000", "Opioid dependence, uncomplicated", "ETH"),
    ConditionCode("B20", "86406008", "Human immunodeficiency virus [HIV] disease", "HIV"),
    ConditionCode("F32.9", "35489007", "Major depressive disorder, single episode", "PSY"),
    ConditionCode("F41.1", "21897009", "Generalized anxiety disorder", "PSY"),
    ConditionCode("A54.00", "15628003", "Gonococcal infection of lower genitourinary tract", "STD"),
)
WELLNESS = ConditionCode("Z00.00", "185349003", "Encounter for general adult medical exam")


@dataclass(frozen=True)
class Medication:
    """A drug: RxNorm clinical drug, an NDC package and the condition it treats."""

    rxnorm: str
    ndc: str
    display: str
    treats: str
    unit_cost: float


MEDICATIONS = (
    Medication(
        "860975",
        "00093726801",
        "24 HR Metformin hydrochloride 500 MG ER Oral Tablet",
        "E11.9",
        0.35,
    ),
    Medication("314076", "68180051301", "Lisinopril 10 MG Oral Tablet", "I10", 0.20),
    Medication("197361", "00093717101", "Amlodipine 5 MG Oral Tablet", "I10", 0.25),
    Medication("310798", "00172208380", "Hydrochlorothiazide 25 MG Oral Tablet", "I10", 0.15),
    Medication("617310", "00378395277", "Atorvastatin 20 MG Oral Tablet", "E78.5", 0.40),
    Medication("312961", "00093715310", "Simvastatin 20 MG Oral Tablet", "E78.5", 0.30),
    Medication(
        "745679", "00173068220", "Albuterol 0.09 MG/ACTUAT Metered Dose Inhaler", "J45.909", 35.0
    ),
    Medication(
        "895994", "00173071820", "Fluticasone propionate 0.044 MG/ACTUAT Inhaler", "J44.9", 60.0
    ),
    Medication("308182", "00093310905", "Amoxicillin 250 MG Oral Capsule", "J02.9", 0.30),
    Medication("313782", "00904198661", "Acetaminophen 325 MG Oral Tablet", "R51.9", 0.05),
    Medication(
        "1010600",
        "12496120803",
        "Buprenorphine 2 MG / Naloxone 0.5 MG Sublingual Film",
        "F11.20",
        8.50,
    ),
    Medication(
        "1999563",
        "61958250101",
        "Bictegravir / Emtricitabine / Tenofovir alafenamide Oral Tablet",
        "B20",
        120.0,
    ),
    Medication("310385", "00093719856", "Fluoxetine 20 MG Oral Capsule", "F32.9", 0.30),
)


@dataclass(frozen=True)
class ServiceCode:
    """A billable service (CPT, HCPCS or CDT) with a typical charge."""

    system: str
    code: str
    display: str
    charge: float


OFFICE_VISITS = (
    ServiceCode(CPT, "99213", "Office or other outpatient visit, established patient, low", 140.0),
    ServiceCode(
        CPT, "99214", "Office or other outpatient visit, established patient, moderate", 210.0
    ),
    ServiceCode(CPT, "99203", "Office or other outpatient visit, new patient, low", 190.0),
)
PREVENTIVE_VISIT = ServiceCode(CPT, "99396", "Periodic preventive medicine, 40-64 years", 260.0)
EMERGENCY_VISIT = ServiceCode(CPT, "99284", "Emergency department visit, moderate severity", 780.0)
INPATIENT_VISIT = ServiceCode(CPT, "99223", "Initial hospital inpatient care, high", 520.0)
PSYCHOTHERAPY = ServiceCode(CPT, "90834", "Psychotherapy, 45 minutes with patient", 165.0)
LAB_SERVICES = (
    ServiceCode(CPT, "80053", "Comprehensive metabolic panel", 48.0),
    ServiceCode(CPT, "80061", "Lipid panel", 42.0),
    ServiceCode(CPT, "83036", "Hemoglobin; glycosylated (A1C)", 28.0),
)
PROCEDURES = (
    ServiceCode(CPT, "93000", "Electrocardiogram, routine ECG with interpretation", 85.0),
    ServiceCode(CPT, "71046", "Radiologic examination, chest; 2 views", 120.0),
    ServiceCode(CPT, "45378", "Colonoscopy, flexible; diagnostic", 1450.0),
    ServiceCode(CPT, "29881", "Arthroscopy, knee, surgical; with meniscectomy", 4200.0),
    ServiceCode(HCPCS, "G0444", "Annual depression screening, 5 to 15 minutes", 22.0),
    ServiceCode(HCPCS, "E0601", "Continuous positive airway pressure (CPAP) device", 850.0),
)
DENTAL_SERVICES = (
    ServiceCode(CDT, "D0120", "Periodic oral evaluation - established patient", 65.0),
    ServiceCode(CDT, "D1110", "Prophylaxis - adult", 110.0),
    ServiceCode(CDT, "D0274", "Bitewings - four radiographic images", 75.0),
)


@dataclass(frozen=True)
class LabTest:
    """A LOINC-coded lab result with a plausible range and unit."""

    loinc: str
    display: str
    unit: str
    low: float
    high: float


LAB_PANELS: dict[str, tuple[str, str, tuple[LabTest, ...]]] = {
    "80053": (
        "24323-8",
        "Comprehensive metabolic 2000 panel - Serum or Plasma",
        (
            LabTest("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 70, 180),
            LabTest("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.6, 1.4),
            LabTest("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 134, 146),
            LabTest("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 3.4, 5.2),
        ),
    ),
    "80061": (
        "57698-3",
        "Lipid panel with direct LDL - Serum or Plasma",
        (
            LabTest("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 140, 260),
            LabTest("2571-8", "Triglyceride [Mass/volume] in Serum or Plasma", "mg/dL", 60, 250),
            LabTest(
                "2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma", "mg/dL", 35, 80
            ),
        ),
    ),
    "83036": (
        "4548-4",
        "Hemoglobin A1c/Hemoglobin.total in Blood",
        (LabTest("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 5.0, 9.5),),
    ),
}
HIV_VIRAL_LOAD = LabTest(
    "20447-9", "HIV 1 RNA [#/volume] (viral load) in Serum or Plasma", "{copies}/mL", 20, 400
)

VITALS = (
    ("8480-6", "Systolic blood pressure", "mm[Hg]", 105, 150),
    ("8462-4", "Diastolic blood pressure", "mm[Hg]", 65, 95),
    ("8867-4", "Heart rate", "/min", 55, 95),
    ("29463-7", "Body weight", "kg", 50, 120),
    ("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 19, 38),
)

VACCINES = (
    ("140", "Influenza, seasonal, injectable, preservative free"),
    ("208", "COVID-19, mRNA, LNP-S, PF, 30 mcg/0.3 mL dose"),
    ("115", "Tdap"),
    ("187", "zoster vaccine recombinant"),
)

ALLERGIES = (
    ("91936005", "Allergy to penicillin", "medication"),
    ("91935009", "Allergy to peanuts", "food"),
    ("300913006", "Shellfish allergy", "food"),
    ("294505008", "Allergy to sulfonamide", "medication"),
)

NOTE_TYPES = (
    ("11506-3", "Progress note"),
    ("34117-2", "History and physical note"),
    ("11488-4", "Consult note"),
    ("18842-5", "Discharge summary"),
)

TAXONOMIES = (
    ("207Q00000X", "Family Medicine Physician"),
    ("207R00000X", "Internal Medicine Physician"),
    ("2084P0800X", "Psychiatry Physician"),
    ("207RI0200X", "Infectious Disease Physician"),
    ("207P00000X", "Emergency Medicine Physician"),
    ("363LF0000X", "Family Nurse Practitioner"),
    ("1223G0001X", "General Practice Dentist"),
    ("183500000X", "Pharmacist"),
)
FACILITY_TAXONOMIES = (
    ("282N00000X", "General Acute Care Hospital"),
    ("261QP2300X", "Primary Care Clinic/Center"),
    ("3336C0003X", "Community/Retail Pharmacy"),
    ("1223G0001X", "General Practice Dentist"),
    ("261QM0801X", "Mental Health Clinic/Center"),
)
