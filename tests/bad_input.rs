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

/// Explicit VR Little Endian header of a value with a 4-byte length field.
fn long_header(group: u16, element: u16, vr: &[u8; 2], len: u32) -> Vec<u8> {
    let mut header = Vec::with_capacity(12);
    header.extend_from_slice(&group.to_le_bytes());
    header.extend_from_slice(&element.to_le_bytes());
    header.extend_from_slice(vr);
    header.extend_from_slice(&[0, 0]);
    header.extend_from_slice(&len.to_le_bytes());
    header
}

/// MR_small.dcm with `inserted` at the start of its data set.
fn with_leading_elements(good: &[u8], inserted: &[u8]) -> Vec<u8> {
    let data_set_at = 132 + meta_group_length(good);
    [&good[..data_set_at], inserted, &good[data_set_at..]].concat()
}

/// An item header of undefined length: (FFFE,E000), 0xFFFFFFFF.
const UNDEFINED_ITEM: [u8; 8] = [0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF];

/// 4 GiB less 16 bytes: the largest even defined length.
const HUGE: u32 = 0xFFFF_FFF0;

/// Found by the fuzz smoke run: dicom-rs reserves and zero-fills a value at its declared
/// length before it reads it, so a file of a few hundred bytes that declares a 4 GiB value
/// cost 4 GiB of memory (pydicom's UN_sequence.dcm, a UN sequence in implicit VR that
/// dicom-rs reads as explicit, cost 3.6 GiB). Declared lengths are now checked against the
/// bytes present first: the error names the file, the element and where it is, whether the
/// value is at the top level, in a sequence item, in the file meta group, in a deflated data
/// set or a fragment of encapsulated Pixel Data.
#[test]
fn a_value_longer_than_the_file_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(common::asset("pydicom/MR_small.dcm")).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };

    let top_level = with_leading_elements(&good, &long_header(0x0011, 0x1010, b"OB", HUGE));
    let nested = with_leading_elements(
        &good,
        &[
            long_header(0x0008, 0x1115, b"SQ", u32::MAX),
            UNDEFINED_ITEM.to_vec(),
            long_header(0x0011, 0x1010, b"UN", HUGE),
        ]
        .concat(),
    );
    // (0002,0003) Media Storage SOP Instance UID, its 2-byte length raised to 65534
    let mut meta = good.clone();
    let sop_instance = meta
        .windows(6)
        .position(|w| w == [2, 0, 3, 0, b'U', b'I'])
        .unwrap();
    meta[sop_instance + 6..sop_instance + 8].copy_from_slice(&65534u16.to_le_bytes());
    let deflated = deflate_data_set(&nested);
    let good_deflated = deflate_data_set(&good);
    let fragment =
        huge_first_fragment(&std::fs::read(common::asset("pydicom/JPEG-lossy.dcm")).unwrap());
    let cases = [
        (
            write("top_level.dcm", &top_level),
            "(0011,1010)",
            "data set",
        ),
        (write("nested.dcm", &nested), "(0011,1010)", "data set"),
        (write("meta.dcm", &meta), "(0002,0003)", "file meta group"),
        (write("deflated.dcm", &deflated), "(0011,1010)", "data set"),
        (write("fragment.dcm", &fragment), "(FFFE,E000)", "data set"),
        (
            common::asset("pydicom/UN_sequence.dcm"),
            "(0008,1115)",
            "data set",
        ),
        // Found by a fuzz run after the check came in: a 2-byte SL value, of which dicom-rs
        // reads no whole number, so it reads the next header 2 bytes early and finds a
        // 1.3 GB length in the text "NONE". The walk reads values as dicom-rs does.
        (
            common::root().join("tests/fixtures/sl-value-shorter-than-one-number.dcm"),
            "(4553,0018)",
            "data set",
        ),
    ];
    for (path, element, place) in &cases {
        let message = file::open(path, Depth::Full)
            .expect_err(element)
            .to_string();
        let name = path.display().to_string();
        for expected in [name.as_str(), *element, *place, "past the end of the data"] {
            assert!(
                message.contains(expected),
                "{name}: expected '{expected}' in: {message}"
            );
        }
    }

    // A header-only read stops at Pixel Data, so a broken fragment does not hide the
    // file's study from a scan; the full read refuses it.
    let header = file::open(&cases[4].0, Depth::Header).expect("headers before Pixel Data");
    assert!(header.sop_instance_uid().is_some());
    // The walk follows deflated data to its end without refusing good data.
    let reference = decode(&common::asset("pydicom/MR_small.dcm")).unwrap();
    let inflated = decode(&write("good_deflated.dcm", &good_deflated)).unwrap();
    assert_eq!(inflated.values, reference.values);
}

/// The file with its data set deflated, as Deflated Explicit VR Little Endian.
fn deflate_data_set(explicit_le: &[u8]) -> Vec<u8> {
    use dicom_encoding::{Codec, TransferSyntaxIndex};
    use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
    use std::io::Write;

    const EXPLICIT: &[u8] = b"1.2.840.10008.1.2.1\0";
    const DEFLATED: &[u8] = b"1.2.840.10008.1.2.1.99";
    let data_set_at = 132 + meta_group_length(explicit_le);
    let mut meta = explicit_le[..data_set_at].to_vec();
    let ts_value = meta
        .windows(EXPLICIT.len())
        .position(|w| w == EXPLICIT)
        .unwrap();
    meta.splice(
        ts_value..ts_value + EXPLICIT.len(),
        DEFLATED.iter().copied(),
    );
    meta[ts_value - 2..ts_value].copy_from_slice(&(DEFLATED.len() as u16).to_le_bytes());
    let group_length = u32::from_le_bytes(meta[140..144].try_into().unwrap()) + 2;
    meta[140..144].copy_from_slice(&group_length.to_le_bytes());

    let ts = TransferSyntaxRegistry
        .get("1.2.840.10008.1.2.1.99")
        .unwrap();
    let Codec::Dataset(Some(adapter)) = ts.codec() else {
        panic!("this build has no deflate codec");
    };
    let mut compressed = Vec::new();
    {
        let mut writer = adapter.adapt_writer(Box::new(&mut compressed));
        writer.write_all(&explicit_le[data_set_at..]).unwrap();
        writer.flush().unwrap();
    }
    [meta, compressed].concat()
}

/// An encapsulated file with the length of its first fragment (the item after the Basic
/// Offset Table) raised to [`HUGE`].
fn huge_first_fragment(encapsulated: &[u8]) -> Vec<u8> {
    // (7FE0,0010) OB, undefined length
    const PIXEL_DATA: [u8; 12] = [
        0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
    ];
    let header = encapsulated
        .windows(12)
        .position(|w| w == PIXEL_DATA)
        .unwrap();
    let offset_table = header + 12;
    assert_eq!(
        encapsulated[offset_table..offset_table + 4],
        [0xFE, 0xFF, 0x00, 0xE0]
    );
    let table_len = u32::from_le_bytes(
        encapsulated[offset_table + 4..offset_table + 8]
            .try_into()
            .unwrap(),
    ) as usize;
    let fragment = offset_table + 8 + table_len;
    let mut broken = encapsulated.to_vec();
    broken[fragment + 4..fragment + 8].copy_from_slice(&HUGE.to_le_bytes());
    broken
}

/// MR_small.dcm with `depth` sequences nested at the start of its data set, each in the item
/// of the one before, all of undefined length.
fn nested_sequences(good: &[u8], depth: usize) -> Vec<u8> {
    let open = [
        long_header(0x0008, 0x1115, b"SQ", u32::MAX),
        UNDEFINED_ITEM.to_vec(),
    ]
    .concat();
    let close = [
        [0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0],
        [0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0],
    ]
    .concat();
    with_leading_elements(good, &[open.repeat(depth), close.repeat(depth)].concat())
}

/// dicom-rs parses nested sequences by recursion: 20000 levels (a 640 KB file) overflowed
/// the stack and aborted the process, which a daemon or Orthanc cannot catch. Nesting is
/// refused beyond `MAX_SEQUENCE_DEPTH` levels, with an error naming the file; that many
/// levels still read.
#[test]
fn sequences_nested_past_the_limit_are_refused_instead_of_overflowing_the_stack() {
    use dicom_xai::dicom::bounds::MAX_SEQUENCE_DEPTH;

    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(common::asset("pydicom/MR_small.dcm")).unwrap();
    for depth in [MAX_SEQUENCE_DEPTH + 1, 20_000] {
        let path = dir.path().join(format!("nested_{depth}.dcm"));
        std::fs::write(&path, nested_sequences(&good, depth)).unwrap();
        for read in [Depth::Header, Depth::Full] {
            let message = file::open(&path, read).expect_err("too deep").to_string();
            assert!(
                message.contains(&path.display().to_string())
                    && message.contains("(0008,1115)")
                    && message.contains(&format!("deeper than {MAX_SEQUENCE_DEPTH} levels")),
                "{message}"
            );
        }
    }
    let path = dir.path().join("nested_limit.dcm");
    std::fs::write(&path, nested_sequences(&good, MAX_SEQUENCE_DEPTH)).unwrap();
    let reference = decode(&common::asset("pydicom/MR_small.dcm")).unwrap();
    assert_eq!(decode(&path).unwrap().values, reference.values);
}

#[test]
fn a_file_whose_uids_are_not_dicom_uids_fails_alone_naming_the_attribute() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = common::write_hostile_uid_files(&dir.path().join("in"));
    std::fs::copy(
        common::asset("pydicom/MR_small.dcm"),
        dir.path().join("in/good.dcm"),
    )
    .unwrap();
    let scanned = scan::scan(&[dir.path().join("in")]);
    assert_eq!(
        scanned.studies.len(),
        1,
        "the good file still makes its study"
    );
    assert_eq!(scanned.issues.len(), hostile.len(), "{:#?}", scanned.issues);
    for (path, uid) in hostile.iter().zip(common::HOSTILE_UIDS) {
        let issue = scanned
            .issues
            .iter()
            .find(|i| &i.file == path)
            .unwrap_or_else(|| panic!("no issue for {}", path.display()));
        assert_eq!(issue.disposition, Disposition::Failed);
        let attribute = if uid.is_empty() {
            "missing StudyInstanceUID"
        } else {
            "StudyInstanceUID"
        };
        assert!(
            issue.message.contains(&path.display().to_string())
                && issue.message.contains(attribute),
            "{}",
            issue.message
        );
        assert!(!issue.message.contains('\0'), "a NUL is shown escaped");
    }

    // the series and instance UIDs are checked the same way
    for (tag, name) in [
        (
            dicom_dictionary_std::tags::SERIES_INSTANCE_UID,
            "SeriesInstanceUID",
        ),
        (
            dicom_dictionary_std::tags::SOP_INSTANCE_UID,
            "SOPInstanceUID",
        ),
    ] {
        let mut object = dicom_object::open_file(common::asset("pydicom/MR_small.dcm")).unwrap();
        object.put(dicom_object::mem::InMemElement::new(
            tag,
            dicom_core::VR::UI,
            dicom_core::PrimitiveValue::from("../../escape"),
        ));
        let path = dir.path().join(format!("{name}.dcm"));
        object.write_to_file(&path).unwrap();
        let issue = scan::read_instance(&path).expect_err("refused");
        assert!(issue.message.contains(name), "{}", issue.message);
    }
}

#[path = "../fuzz/shared/ingest.rs"]
mod ingest;

/// What the fuzz smoke run (`make test-full`) starts from, replayed in `make test`: every
/// seed (pydicom's files under 2 MB) and every regression input found by fuzzing
/// (`tests/fixtures/`) through the fuzz target's own invariants.
#[test]
fn the_fuzz_targets_invariants_hold_on_its_seeds_and_regressions() {
    let seeds = common::files_under(&common::asset("pydicom"))
        .into_iter()
        .filter(|f| std::fs::metadata(f).is_ok_and(|m| m.len() < 2 * 1024 * 1024));
    let regressions = common::files_under(&common::root().join("tests/fixtures"))
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "dcm"));
    let mut replayed = 0;
    for input in seeds.chain(regressions) {
        let bytes = std::fs::read(&input).unwrap();
        let outcome = std::panic::catch_unwind(|| ingest::check(&bytes));
        assert!(outcome.is_ok(), "{}: an invariant broke", input.display());
        replayed += 1;
    }
    assert!(replayed > 80, "only {replayed} inputs");
}
