//! Bad input: each broken file gets one clear error naming it, nothing panics, the good
//! files beside it are still read, and no input file is ever modified.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dicom_xai::dicom::file::{self, Depth, Layout};
use dicom_xai::dicom::pixels;
use dicom_xai::dicom::scan::{self, Disposition};

/// A folder holding one good MR slice and every kind of broken file beside it.
struct Zoo {
    dir: tempfile::TempDir,
}

impl Zoo {
    fn new() -> Zoo {
        let dir = tempfile::tempdir().unwrap();
        let good = std::fs::read(common::asset("pydicom/MR_small.dcm")).unwrap();
        let write =
            |name: &str, bytes: &[u8]| std::fs::write(dir.path().join(name), bytes).unwrap();
        write("good.dcm", &good);
        write("empty.dcm", b"");
        write(
            "notes.txt",
            b"This folder holds the MR study of 2026-11-26.\n",
        );
        write("truncated.dcm", &good[..good.len() - 3000]);
        write("header_only.dcm", &good[..700]);
        // the same file without its 128-byte preamble
        write("no_preamble.dcm", &good[128..]);
        // the bare data set, without preamble and file meta group
        write("bare.dcm", &good[132 + meta_group_length(&good)..]);
        // an unknown transfer syntax of the same length as the real one
        let ts = b"1.2.840.10008.1.2.1\0";
        let at = good.windows(ts.len()).position(|w| w == ts).unwrap();
        let mut unknown = good.clone();
        unknown[at..at + ts.len()].copy_from_slice(b"1.2.3.4.5.6.7.8.9.0\0");
        write("unknown_ts.dcm", &unknown);
        for name in [
            "badVR.dcm",
            "rtplan.dcm",
            "JPEG-lossy.dcm",
            "no_meta_group_length.dcm",
        ] {
            std::fs::copy(
                common::asset(&format!("pydicom/{name}")),
                dir.path().join(name),
            )
            .unwrap();
        }
        Zoo { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn hashes(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        common::checksums(self.dir.path())
    }
}

/// Length of the file meta group (its group length element's value), after "DICM".
fn meta_group_length(bytes: &[u8]) -> usize {
    // (0002,0000) UL 4 <value>: 12 bytes, at offset 132
    let value = u32::from_le_bytes(bytes[140..144].try_into().unwrap()) as usize;
    12 + value
}

/// Opens and decodes a file the way the pipeline does.
fn decode(path: &Path) -> Result<pixels::Frames, String> {
    let dicom = file::open(path, Depth::Full).map_err(|e| e.to_string())?;
    pixels::decode(&dicom).map_err(|e| e.to_string())
}

#[test]
fn every_broken_file_fails_alone_with_its_name_in_the_message() {
    let zoo = Zoo::new();
    let before = zoo.hashes();
    let good = decode(&zoo.path("good.dcm")).unwrap();

    let expectations = [
        ("empty.dcm", "empty file"),
        ("notes.txt", "not a DICOM file"),
        ("truncated.dcm", "malformed DICOM"),
        ("header_only.dcm", "malformed DICOM"),
        ("unknown_ts.dcm", "1.2.3.4.5.6.7.8.9.0"),
        ("badVR.dcm", "NumberOfFrames"),
        ("rtplan.dcm", "no Pixel Data"),
        ("JPEG-lossy.dcm", "cannot decode pixel data"),
        ("no_meta_group_length.dcm", "malformed DICOM"),
    ];
    for (name, expected) in expectations {
        let path = zoo.path(name);
        let message = decode(&path).expect_err(name);
        assert!(
            message.contains(&path.display().to_string()),
            "{name}: no file name in: {message}"
        );
        assert!(
            message.contains(expected),
            "{name}: expected '{expected}' in: {message}"
        );
    }

    // the same pixels with and without preamble and meta group
    for (name, layout) in [
        ("no_preamble.dcm", Layout::Part10WithoutPreamble),
        ("bare.dcm", Layout::BareDataSet),
    ] {
        let dicom = file::open(&zoo.path(name), Depth::Full).unwrap();
        assert_eq!(dicom.layout, layout, "{name}");
        assert_eq!(
            pixels::decode(&dicom).unwrap().values,
            good.values,
            "{name}"
        );
    }
    assert_eq!(zoo.hashes(), before, "input files were modified");
}

#[test]
fn a_scan_groups_the_good_files_and_reports_each_bad_one() {
    let zoo = Zoo::new();
    // a transfer in progress and desktop metadata: hidden, passed over without a word
    std::fs::write(zoo.path(".IM0042.dcm.part"), b"half a file").unwrap();
    std::fs::create_dir(zoo.path(".cache")).unwrap();
    std::fs::write(zoo.path(".cache/x"), b"").unwrap();
    let before = zoo.hashes();
    let scanned = scan::scan(&[zoo.dir.path().to_path_buf()]);

    // good, no_preamble, bare and truncated are one SOP instance (duplicates collapse);
    // JPEG-lossy, badVR and rtplan have readable headers and studies of their own
    assert_eq!(
        scanned.studies.len(),
        4,
        "{:#?}",
        scanned.studies.iter().map(|s| &s.uid).collect::<Vec<_>>()
    );
    let issues: BTreeMap<String, (Disposition, String)> = scanned
        .issues
        .iter()
        .map(|i| {
            let name = i.file.file_name().unwrap().to_string_lossy().into_owned();
            (name, (i.disposition, i.message.clone()))
        })
        .collect();
    assert_eq!(issues["notes.txt"].0, Disposition::Skipped);
    assert!(
        !issues.contains_key(".IM0042.dcm.part") && !issues.contains_key("x"),
        "{issues:?}"
    );
    assert_eq!(issues["empty.dcm"].0, Disposition::Failed);
    assert_eq!(issues["unknown_ts.dcm"].0, Disposition::Failed);
    assert_eq!(issues["no_meta_group_length.dcm"].0, Disposition::Failed);
    for (name, (_, message)) in &issues {
        assert!(message.contains(name.as_str()), "{name}: {message}");
    }
    let mr = scanned
        .studies
        .iter()
        .flat_map(|s| &s.series)
        .find(|s| {
            s.instances
                .iter()
                .any(|i| i.path.ends_with("good.dcm") || i.path.ends_with("bare.dcm"))
        })
        .expect("the good slice is in a series");
    assert_eq!(mr.slices.len(), 1, "one SOP instance, however many copies");
    assert_eq!(zoo.hashes(), before, "input files were modified");
}

/// Found by the fuzz smoke run: an RLE Lossless file whose segment is shorter than its
/// runs say makes dicom-rs's RLE codec index past the end. The panic is caught and becomes
/// this file's error, naming it; the next file decodes as usual.
#[test]
fn a_codec_that_panics_on_malformed_data_fails_that_file_only() {
    let broken = common::root().join("tests/fixtures/rle-segment-overrun.dcm");
    let message = decode(&broken).expect_err("malformed RLE data");
    assert!(
        message.contains("rle-segment-overrun.dcm")
            && message.contains("the codec failed on malformed data")
            && message.contains("index out of bounds"),
        "{message}"
    );
    assert!(decode(&common::asset("pydicom/MR_small.dcm")).is_ok());
}
