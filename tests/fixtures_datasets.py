"""Tiny data sets in the published layouts of the paper's seven data sets, written into a folder.

Each ``write_<name>(root)`` makes a few patients with a few records each, using the real
file names, column names, codings and file formats (JPEG/PNG via Pillow, DICOM via pydicom,
WFDB via wfdb, npz via numpy), and returns a dict of facts the tests check against.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

RNG_SEED = 0


def _jpeg(path: Path, shape=(40, 52), rgb=False, seed=0):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    a = rng.integers(0, 256, size=(*shape, 3) if rgb else shape, dtype=np.uint8)
    Image.fromarray(a).save(path, quality=90)


FINDINGS = [
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
]


def write_chexpert(root) -> dict:
    root = Path(root)
    base = root / "CheXpert-v1.0-small"
    rows = {"train": [], "valid": []}
    k = 0
    for split, patients in (("train", [1, 2, 3, 4]), ("valid", [64541])):
        for p in patients:
            for study in (1, 2):
                for view, fl in (("view1_frontal", "Frontal"), ("view2_lateral", "Lateral")):
                    rel = f"CheXpert-v1.0-small/{split}/patient{p:05d}/study{study}/{view}.jpg"
                    _jpeg(root / rel, seed=k)
                    r = {
                        "Path": rel,
                        "Sex": "Female" if p % 2 else "Male",
                        "Age": 40 + p,
                        "Frontal/Lateral": fl,
                        "AP/PA": "AP" if fl == "Frontal" else np.nan,
                    }
                    for j, f in enumerate(FINDINGS):
                        r[f] = [1.0, 0.0, -1.0, np.nan][(k + j) % 4]
                    rows[split].append(r)
                    k += 1
    for split in rows:
        pd.DataFrame(rows[split]).to_csv(base / f"{split}.csv", index=False)
    demo = pd.DataFrame(
        {
            "PATIENT": ["patient00001", "patient00002", "patient00003", "patient00004", "patient64541"],
            "GENDER": ["Female", "Male", "Female", "Male", "Female"],
            "AGE_AT_CXR": [41, 42, 43, 44, 45],
            "PRIMARY_RACE": [
                "White, non-Hispanic",
                "Black or African American",
                "Asian - Historical Conv",
                "Native Hawaiian or Other Pacific Islander",
                np.nan,
            ],
            "ETHNICITY": ["Non-Hispanic/Non-Latino"] * 4 + ["Unknown"],
        }
    )
    demo.to_excel(root / "CHEXPERT DEMO.xlsx", index=False)
    return {
        "n_frontal": 10,
        "patients": 5,
        "test_patients": {"patient64541"},
        "race": {
            "patient00001": "White",
            "patient00002": "Black",
            "patient00003": "Asian",
            "patient00004": "Other",
            "patient64541": "Unknown",
        },
    }


def write_mimic_cxr(root) -> dict:
    root = Path(root)
    meta, lab, split = [], [], []
    subjects = [10000032, 10000764, 11000011, 12000022]
    k = 0
    for i, s in enumerate(subjects):
        for st in range(2):
            study = 50000000 + i * 10 + st
            lab.append(
                {
                    "subject_id": s,
                    "study_id": study,
                    **{f: [1.0, 0.0, -1.0, np.nan][(k + j) % 4] for j, f in enumerate(FINDINGS)},
                }
            )
            for v, view in enumerate(("PA", "LATERAL")):
                d = f"dcm{i}{st}{v}abc"
                meta.append(
                    {"dicom_id": d, "subject_id": s, "study_id": study, "ViewPosition": view, "Rows": 40, "Columns": 52}
                )
                split.append(
                    {
                        "dicom_id": d,
                        "study_id": study,
                        "subject_id": s,
                        "split": "test" if i == 3 else ("validate" if i == 2 else "train"),
                    }
                )
                _jpeg(root / "files" / f"p{str(s)[:2]}" / f"p{s}" / f"s{study}" / f"{d}.jpg", seed=k)
                k += 1
    pd.DataFrame(meta).to_csv(root / "mimic-cxr-2.0.0-metadata.csv", index=False)
    pd.DataFrame(lab).to_csv(root / "mimic-cxr-2.0.0-chexpert.csv", index=False)
    pd.DataFrame(lab).to_csv(root / "mimic-cxr-2.0.0-negbio.csv", index=False)
    pd.DataFrame(split).to_csv(root / "mimic-cxr-2.0.0-split.csv.gz", index=False)
    (root / "hosp").mkdir(exist_ok=True)
    pd.DataFrame(
        {
            "subject_id": subjects,
            "gender": ["F", "M", "F", "M"],
            "anchor_age": [50, 60, 70, 80],
            "anchor_year": 2150,
            "anchor_year_group": "2014 - 2016",
            "dod": np.nan,
        }
    ).to_csv(root / "hosp" / "patients.csv", index=False)
    pd.DataFrame(
        {
            "subject_id": [10000032, 10000032, 10000764, 11000011],
            "hadm_id": [1, 2, 3, 4],
            "admittime": ["2150-01-01 10:00:00", "2151-01-01 10:00:00", "2150-05-01 00:00:00", "2150-06-01 00:00:00"],
            "insurance": ["Medicaid", "Medicare", "Other", "Medicare"],
            "race": ["WHITE", "BLACK/AFRICAN AMERICAN", "ASIAN", "WHITE"],
        }
    ).to_csv(root / "hosp" / "admissions.csv", index=False)
    return {
        "n_frontal": 8,
        "test_patients": {"12000022"},
        "race": {"10000032": "BLACK/AFRICAN AMERICAN", "10000764": "ASIAN", "11000011": "WHITE", "12000022": "Unknown"},
        "insurance": {"10000032": "Medicare"},
    }


def _dicom(path: Path, seed: int, monochrome1=False):
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"  # digital mammography for presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 4096, size=(60, 48), dtype=np.uint16)
    a[:10] = 0  # a dark band at the top (bright after MONOCHROME1 inversion)
    ds.Rows, ds.Columns = a.shape
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 16, 12, 11, 0
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.PixelData = a.tobytes()
    pydicom.dcmwrite(str(path), ds, enforce_file_format=True)


def write_embed(root) -> dict:
    root = Path(root)
    (root / "tables").mkdir(parents=True, exist_ok=True)
    clin, meta = [], []
    k = 0
    for p in range(4):
        empi = 10000000 + p
        for e in range(2):
            acc = 6000000 + p * 10 + e
            den = [1, 2, 3, 4, 5, np.nan, 2, 3][p * 2 + e]
            for numfind in (1, 2):
                clin.append(
                    {
                        "empi_anon": empi,
                        "acc_anon": acc,
                        "side": "L",
                        "numfind": numfind,
                        "tissueden": den,
                        "RACE_DESC": [
                            "African American  or Black",
                            "Caucasian or White",
                            "Asian",
                            "Caucasian or White",
                        ][p],
                        "ETHNIC_GROUP_DESC": "Non-Hispanic or Latino",
                        "age_at_study": 50 + p,
                    }
                )
            for view in ("CC", "MLO"):
                for ftype in ("2D", "cview"):
                    rel = f"cohort_1/{empi}/{acc}/1.2.3.{k}.dcm"
                    meta.append(
                        {
                            "empi_anon": empi,
                            "acc_anon": acc,
                            "anon_dicom_path": f"/mnt/NAS2/mammo/anon_dicom/{rel}",
                            "ViewPosition": view,
                            "ImageLateralityFinal": "L",
                            "FinalImageType": ftype,
                        }
                    )
                    _dicom(root / "images" / rel, seed=k, monochrome1=(k % 2 == 1))
                    k += 1
    pd.DataFrame(clin).to_csv(root / "tables" / "EMBED_OpenData_clinical.csv", index=False)
    pd.DataFrame(meta).to_csv(root / "tables" / "EMBED_OpenData_metadata.csv", index=False)
    # exams with density 1,2,3,4,(5 dropped),(blank dropped),2,3 → 6 exams × 2 views of type 2D
    return {"n_records": 12, "labels": {0, 1, 2, 3}}


def write_fitzpatrick17k(root) -> dict:
    root = Path(root)
    rows = []
    for i in range(9):
        h = f"{i:032x}"
        _jpeg(root / "images" / f"{h}.jpg", shape=(30, 45), rgb=True, seed=i)
        rows.append(
            {
                "md5hash": h,
                "fitzpatrick_scale": [1, 2, 3, 4, 5, 6, -1, 2, 3][i],
                "fitzpatrick_centaur": [1, 2, 3, 4, 5, 6, 1, 2, 3][i],
                "label": ["psoriasis", "melanoma", "acne"][i % 3],
                "nine_partition_label": ["inflammatory", "malignant melanoma", "benign epidermal"][i % 3],
                "three_partition_label": ["non-neoplastic", "malignant", "benign"][i % 3],
                "qc": np.nan,
                "url": f"https://example.org/{i}.jpg",
                "url_alphanum": f"example{i}jpg",
            }
        )
    pd.DataFrame(rows).to_csv(root / "fitzpatrick17k.csv", index=False)
    return {"n_records": 9, "skin": {"I/II": 3, "III/IV": 3, "V/VI": 2, "unknown": 1}}


def write_fairvision(root, disease="Glaucoma") -> dict:
    root = Path(root)
    rng = np.random.default_rng(1)
    n = 0
    for split, count in (("train", 4), ("val", 2), ("test", 3)):
        d = root / disease / split
        d.mkdir(parents=True, exist_ok=True)
        for _ in range(count):
            n += 1
            np.savez_compressed(
                d / f"data_{n:05d}.npz",
                slo_fundus=rng.random((200, 200)).astype(np.float32),
                oct_bscans=rng.integers(0, 255, size=(4, 8, 8), dtype=np.uint8),
                glaucoma=np.array(n % 2),
                race=np.array(n % 3),
                male=np.array(n % 2),
                hispanic=np.array(0),
                maritalstatus=np.array(0),
                language=np.array(0),
                age=np.array(60.0 + n),
            )
    pd.DataFrame({"filename": [f"data_{i:05d}.npz" for i in range(1, n + 1)]}).to_csv(
        root / "data_summary_glaucoma.csv", index=False
    )
    return {"n_records": n, "n_test": 3}


LEADS = ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def write_ptbxl(root) -> dict:
    import wfdb

    root = Path(root)
    rng = np.random.default_rng(2)
    scp = pd.DataFrame(
        {
            "description": ["normal ECG", "inferior MI", "non-specific ST changes", "LBBB", "LVH", "sinus rhythm"],
            "diagnostic": [1.0, 1.0, 1.0, 1.0, 1.0, np.nan],
            "diagnostic_class": ["NORM", "MI", "STTC", "CD", "HYP", np.nan],
        },
        index=pd.Index(["NORM", "IMI", "NDT", "CLBBB", "LVH", "SR"]),
    )
    scp.to_csv(root / "scp_statements.csv")
    codes = [
        "{'NORM': 100.0, 'SR': 0.0}",
        "{'IMI': 50.0, 'LVH': 100.0}",
        "{'NDT': 100.0}",
        "{'CLBBB': 100.0, 'IMI': 15.0}",
        "{'SR': 0.0}",
        "{'NORM': 80.0}",
        "{'LVH': 0.0}",
    ]
    rows = []
    for i, c in enumerate(codes):
        ecg_id = i + 1
        rel = f"records100/00000/{ecg_id:05d}_lr"
        (root / "records100" / "00000").mkdir(parents=True, exist_ok=True)
        sig = rng.normal(0, 0.5, size=(1000, 12))
        sig[:, 0] = i  # lead I carries the record number: checks lead order
        wfdb.wrsamp(
            f"{ecg_id:05d}_lr",
            fs=100,
            units=["mV"] * 12,
            sig_name=LEADS,
            p_signal=sig,
            fmt=["16"] * 12,
            write_dir=str(root / "records100" / "00000"),
        )
        rows.append(
            {
                "ecg_id": ecg_id,
                "patient_id": float(15709 + i // 2),
                "age": [56, 19, 37, 300, 24, 19, 60][i],
                "sex": [1, 0, 1, 0, 0, 1, 1][i],
                "height": np.nan,
                "weight": 63.0,
                "nurse": 2.0,
                "site": 0.0,
                "device": "CS-12   E",
                "recording_date": "1984-11-09 09:17:34",
                "report": "sinusrhythmus",
                "scp_codes": c,
                "heart_axis": np.nan,
                "validated_by": np.nan,
                "second_opinion": False,
                "initial_autogenerated_report": False,
                "validated_by_human": True,
                "baseline_drift": np.nan,
                "static_noise": np.nan,
                "burst_noise": np.nan,
                "electrodes_problems": np.nan,
                "extra_beats": ["", "1ES", "", "SVES", "", "", ""][i] or np.nan,
                "pacemaker": np.nan,
                "strat_fold": [3, 10, 10, 1, 2, 5, 9][i],
                "filename_lr": rel,
                "filename_hr": rel.replace("100", "500").replace("_lr", "_hr"),
            }
        )
    pd.DataFrame(rows).to_csv(root / "ptbxl_database.csv", index=False)
    # ecg 5 (SR only) is not diagnostic; ecg 7 (LVH at 0 %) counts at min_likelihood 0
    return {
        "n_records": 6,
        "labels": {"1": {"NORM"}, "2": {"MI", "HYP"}, "3": {"STTC"}, "4": {"CD", "MI"}, "6": {"NORM"}, "7": {"HYP"}},
        "test": {"2", "3"},
    }


def write_mimic_iv_ed(root, raw=True) -> dict:
    root = Path(root)
    rng = np.random.default_rng(3)
    n = 12
    subj = np.repeat([10001, 10002, 10003, 10004], 3)
    stay = 30000000 + np.arange(n)
    hadm = np.where(np.arange(n) % 3 == 0, 20000000 + np.arange(n), np.nan)
    bench = pd.DataFrame(
        {
            "subject_id": subj,
            "hadm_id": hadm,
            "stay_id": stay,
            "intime": "2150-03-01 10:00:00",
            "age": 40 + np.arange(n),
            "gender": np.where(subj % 2, "F", "M"),
            "race": np.where(subj % 2, "WHITE", "BLACK/AFRICAN AMERICAN"),
            "insurance": np.where(subj == 10004, "Medicaid", "Other"),
            **{
                f"triage_{v}": rng.normal(50, 10, n).round(1)
                for v in ["temperature", "heartrate", "resprate", "o2sat", "sbp", "dbp", "pain", "acuity"]
            },
            "chiefcom_chest_pain": np.arange(n) % 2,
            "chiefcom_headache": (np.arange(n) + 1) % 2,
            "cci_CHF": np.arange(n) % 4 == 0,
            "eci_Hypertension": np.arange(n) % 3 == 0,
            "outcome_hospitalization": ~np.isnan(hadm),
            "outcome_critical": False,
        }
    )
    bench.to_csv(root / "master_dataset.csv", index=False)
    if raw:
        (root / "ed").mkdir(exist_ok=True)
        (root / "hosp").mkdir(exist_ok=True)
        bench[["subject_id", "hadm_id", "stay_id", "intime", "gender", "race"]].assign(
            outtime="2150-03-01 14:00:00", arrival_transport="WALK IN", disposition="HOME"
        ).to_csv(root / "ed" / "edstays.csv", index=False)
        tri = bench[["subject_id", "stay_id"]].copy()
        for v in ["temperature", "heartrate", "resprate", "o2sat", "sbp", "dbp", "acuity"]:
            tri[v] = bench[f"triage_{v}"]
        tri["pain"] = np.where(np.arange(n) == 0, "unable", bench["triage_pain"].astype(str))
        tri["chiefcomplaint"] = np.where(np.arange(n) % 2, "Chest pain", "HEADACHE, N/V")
        tri.to_csv(root / "ed" / "triage.csv", index=False)
        pd.DataFrame(
            {
                "subject_id": [10001, 10002, 10003, 10004],
                "gender": ["F", "M", "F", "M"],
                "anchor_age": [30, 40, 50, 60],
                "anchor_year": 2148,
            }
        ).to_csv(root / "hosp" / "patients.csv", index=False)
        pd.DataFrame(
            {
                "subject_id": subj[~np.isnan(hadm)],
                "hadm_id": hadm[~np.isnan(hadm)].astype(int),
                "admittime": "2150-03-01 12:00:00",
                "insurance": "Medicare",
            }
        ).to_csv(root / "hosp" / "admissions.csv", index=False)
    return {"n_records": n, "n_patients": 4, "hospitalised": int((~np.isnan(hadm)).sum())}


WRITERS = {
    "chexpert": write_chexpert,
    "mimic_cxr": write_mimic_cxr,
    "embed": write_embed,
    "fitzpatrick17k": write_fitzpatrick17k,
    "fairvision": write_fairvision,
    "ptbxl": write_ptbxl,
    "mimic_iv_ed": write_mimic_iv_ed,
}


def write_all(base) -> dict:
    """Every fixture, each in ``base/<adapter name>``; returns {name: facts}."""
    out = {}
    for name, fn in WRITERS.items():
        d = Path(base) / name
        d.mkdir(parents=True, exist_ok=True)
        out[name] = fn(d)
    return out
