#!/usr/bin/env python3
"""Reads a Structured Report written by dicom-xai with highdicom as a TID 1500 Measurement
Report and prints its groups: tracking identifier, finding, measurements (name, value, unit),
qualitative evaluations, source images and the outputs it names (`99DXAI XAI-OUTPUT`
images), as JSON. Fails when highdicom refuses it.

Usage: check_structured_report.py SR.dcm
"""

import json
import sys

import highdicom as hd
import pydicom


def main() -> None:
    ds = pydicom.dcmread(sys.argv[1])
    sr = hd.sr.Comprehensive3DSR.from_dataset(ds)
    report = hd.sr.MeasurementReport.from_sequence([sr])
    groups = []
    for group in report.get_image_measurement_groups():
        measurements = [
            {"name": m.name.meaning, "value": float(m.value), "unit": m.unit.value}
            for m in group.get_measurements()
        ]
        qualitative = [q.value.value for q in group.get_qualitative_evaluations()]
        groups.append({
            "tracking": group.tracking_identifier,
            "finding": group.finding_type.value if group.finding_type else None,
            "measurements": measurements,
            "qualitative": qualitative,
            "source_images": [i.referenced_sop_instance_uid for i in group.source_images],
            "outputs": [
                item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
                # the group is a template of one item: its container
                for item in group[0].ContentSequence
                if item.ValueType == "IMAGE"
                and item.ConceptNameCodeSequence[0].CodeValue == "XAI-OUTPUT"
            ],
        })
    print(json.dumps({"sop_instance_uid": ds.SOPInstanceUID, "groups": groups}))


if __name__ == "__main__":
    main()
