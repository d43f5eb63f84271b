//! Opening one DICOM file: Part 10 files with or without the 128-byte preamble, and bare data
//! sets without a file meta group (as some old archives hold), with errors that name the file.
//!
//! Files are read into memory once and parsed from there, so the same code serves paths and
//! byte buffers (the fuzz target), and input files are only ever opened for reading.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use dicom_dictionary_std::{tags, uids};
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::file::ReadPreamble;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{FileDicomObject, InMemDicomObject, OpenFileOptions};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use snafu::{ResultExt, Snafu};

use super::attrs::{self, DataSet};
use super::bounds::{self, BoundsError};

/// Why a file could not be read as DICOM. Every message starts with the file's path.
#[derive(Debug, Snafu)]
#[non_exhaustive]
pub enum ReadError {
    /// The file system refused the read.
    #[snafu(display("{}: cannot read file: {source}", path.display()))]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Zero bytes: typically a transfer that has not started writing yet.
    #[snafu(display("{}: empty file (0 bytes)", path.display()))]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// Neither a Part 10 file nor a recognisable bare data set.
    #[snafu(display(
        "{}: not a DICOM file (no DICM marker and no data set at the start)",
        path.display()
    ))]
    NotDicom {
        /// The file.
        path: PathBuf,
    },
    /// The bytes look like DICOM but do not parse (truncated, wrong VR, bad lengths).
    #[snafu(display("{}: malformed DICOM: {source}", path.display()))]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What the parser reported.
        #[snafu(source(from(dicom_object::ReadError, Box::new)))]
        source: Box<dicom_object::ReadError>,
    },
    /// A value's declared length runs past the end of the file, or sequences nest deeper
    /// than the parser's stack allows: refused before the parser would reserve the memory
    /// or recurse.
    #[snafu(display("{}: malformed DICOM: {source}", path.display()))]
    OutOfBounds {
        /// The file.
        path: PathBuf,
        /// The element and what it asks.
        source: BoundsError,
    },
    /// A DICOMDIR media directory, which indexes images but holds none.
    #[snafu(display("{}: a DICOMDIR (media directory), not an image", path.display()))]
    MediaDirectory {
        /// The file.
        path: PathBuf,
    },
}

/// How much of each file to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Everything up to, not including, Pixel Data: enough to group and order files.
    Header,
    /// The whole data set.
    Full,
}

/// How the file was laid out on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A standard Part 10 file: 128-byte preamble, "DICM", file meta group.
    Part10,
    /// "DICM" and a meta group, but no preamble.
    Part10WithoutPreamble,
    /// A bare data set, no meta group: the transfer syntax was inferred from its first bytes.
    BareDataSet,
}

/// A parsed DICOM file.
#[derive(Debug, Clone)]
pub struct DicomFile {
    /// Where it came from.
    pub path: PathBuf,
    /// How it was laid out.
    pub layout: Layout,
    /// The data set with its (possibly synthesised) file meta group.
    pub object: FileDicomObject<InMemDicomObject>,
}

impl DicomFile {
    /// The data set.
    pub fn dataset(&self) -> &DataSet {
        &self.object
    }

    /// The transfer syntax UID, from the file meta group.
    pub fn transfer_syntax(&self) -> &str {
        self.object.meta().transfer_syntax()
    }

    /// The SOP Instance UID, when the data set has one.
    pub fn sop_instance_uid(&self) -> Option<String> {
        attrs::string(self.dataset(), tags::SOP_INSTANCE_UID)
    }
}

/// Reads and parses the file at `path`.
pub fn open(path: &Path, depth: Depth) -> Result<DicomFile, ReadError> {
    let bytes = std::fs::read(path).context(IoSnafu { path })?;
    parse(&bytes, path, depth)
}

/// Parses a file's bytes; `path` only labels messages.
pub fn parse(bytes: &[u8], path: &Path, depth: Depth) -> Result<DicomFile, ReadError> {
    if bytes.is_empty() {
        return EmptySnafu { path }.fail();
    }
    let (layout, object) = if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        (Layout::Part10, parse_part10(&bytes[128..], path, depth)?)
    } else if bytes.starts_with(b"DICM") {
        (
            Layout::Part10WithoutPreamble,
            parse_part10(bytes, path, depth)?,
        )
    } else if let Some(ts) = bare_data_set_syntax(bytes) {
        (Layout::BareDataSet, parse_bare(bytes, ts, path)?)
    } else {
        return NotDicomSnafu { path }.fail();
    };
    if object
        .meta()
        .media_storage_sop_class_uid()
        .trim_end_matches('\0')
        == uids::MEDIA_STORAGE_DIRECTORY_STORAGE
    {
        return MediaDirectorySnafu { path }.fail();
    }
    Ok(DicomFile {
        path: path.to_path_buf(),
        layout,
        object,
    })
}

fn parse_part10(
    bytes_from_magic: &[u8],
    path: &Path,
    depth: Depth,
) -> Result<FileDicomObject<InMemDicomObject>, ReadError> {
    bounds::check_part10(bytes_from_magic, depth == Depth::Header)
        .context(OutOfBoundsSnafu { path })?;
    let options = OpenFileOptions::new().read_preamble(ReadPreamble::Never);
    let options = match depth {
        Depth::Header => options.read_until(tags::PIXEL_DATA),
        Depth::Full => options.read_all(),
    };
    options
        .from_reader(Cursor::new(bytes_from_magic))
        .context(MalformedSnafu { path })
}

/// Infers the transfer syntax of a data set written without a meta group from its first
/// element header, as toolkits do for such files: the first group must be a plausible data
/// set group (0008 is by far the most common), read little- or big-endian, and an explicit
/// VR shows as two upper-case letters after the tag.
fn bare_data_set_syntax(bytes: &[u8]) -> Option<&'static str> {
    if bytes.len() < 8 {
        return None;
    }
    let group_le = u16::from_le_bytes([bytes[0], bytes[1]]);
    let group_be = u16::from_be_bytes([bytes[0], bytes[1]]);
    let explicit_vr = bytes[4].is_ascii_uppercase() && bytes[5].is_ascii_uppercase();
    let plausible = |group: u16| (0x0008..=0x0028).contains(&group) && group.is_multiple_of(2);
    match (plausible(group_le), plausible(group_be), explicit_vr) {
        (true, _, true) => Some(uids::EXPLICIT_VR_LITTLE_ENDIAN),
        (true, _, false) => Some(uids::IMPLICIT_VR_LITTLE_ENDIAN),
        // retired, but archives still hold it
        #[allow(deprecated)]
        (false, true, true) => Some(uids::EXPLICIT_VR_BIG_ENDIAN),
        _ => None,
    }
}

fn parse_bare(
    bytes: &[u8],
    ts_uid: &'static str,
    path: &Path,
) -> Result<FileDicomObject<InMemDicomObject>, ReadError> {
    let ts = TransferSyntaxRegistry
        .get(ts_uid)
        .ok_or_else(|| NotDicomSnafu { path }.build())?;
    bounds::check_data_set(bytes, ts, false).context(OutOfBoundsSnafu { path })?;
    let dataset = InMemDicomObject::read_dataset_with_ts(Cursor::new(bytes), ts)
        .map_err(|_| NotDicomSnafu { path }.build())?;
    let sop_class = attrs::string(&dataset, tags::SOP_CLASS_UID);
    let sop_instance = attrs::string(&dataset, tags::SOP_INSTANCE_UID);
    let (Some(sop_class), Some(sop_instance)) = (sop_class, sop_instance) else {
        // A data set with neither UID is more likely noise that happened to parse.
        return NotDicomSnafu { path }.fail();
    };
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(ts_uid)
        .media_storage_sop_class_uid(sop_class)
        .media_storage_sop_instance_uid(sop_instance)
        .build()
        .map_err(|_| NotDicomSnafu { path }.build())?;
    Ok(dataset.with_exact_meta(meta))
}
