//! The per-file summary behind `dicom-xai inspect`: what a PACS administrator needs to know
//! about a file before asking why it was not processed.

use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use serde::Serialize;

use super::attrs;
use super::file::{self, Depth, Layout};
use super::pixels;
use super::voi::{self, Voi, Window};

/// Statistics of the stored values after the Modality LUT, before any VOI transform.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PixelStats {
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
    /// Mean over every sample of every frame.
    pub mean: f64,
}

/// What `inspect` reports about one file. Fields that could not be read are `null`; a file
/// that failed (to parse, or to decode) has `error` set, naming it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FileSummary {
    /// The file.
    pub file: PathBuf,
    /// Part 10, Part 10 without preamble, or bare data set.
    pub layout: Option<&'static str>,
    /// Transfer syntax UID.
    pub transfer_syntax: Option<String>,
    /// Its name.
    pub transfer_syntax_name: Option<String>,
    /// SOP Class UID.
    pub sop_class_uid: Option<String>,
    /// SOP Instance UID.
    pub sop_instance_uid: Option<String>,
    /// Study Instance UID.
    pub study_instance_uid: Option<String>,
    /// Series Instance UID.
    pub series_instance_uid: Option<String>,
    /// Modality.
    pub modality: Option<String>,
    /// Rows.
    pub rows: Option<i64>,
    /// Columns.
    pub columns: Option<i64>,
    /// Number of frames.
    pub frames: Option<u32>,
    /// Samples per pixel.
    pub samples_per_pixel: Option<i64>,
    /// Bits allocated.
    pub bits_allocated: Option<i64>,
    /// Bits stored.
    pub bits_stored: Option<i64>,
    /// Photometric interpretation as stored.
    pub photometric_interpretation: Option<String>,
    /// The window the pipeline would use for the first frame, if any.
    pub window: Option<Window>,
    /// Stored values after the Modality LUT.
    pub pixel_stats: Option<PixelStats>,
    /// Why the file could not be read or decoded.
    pub error: Option<String>,
}

/// Summarises one file; never fails (failures are in `error`).
pub fn inspect(path: &Path) -> FileSummary {
    let mut summary = FileSummary {
        file: path.to_path_buf(),
        ..FileSummary::default()
    };
    let dicom = match file::open(path, Depth::Full) {
        Ok(dicom) => dicom,
        Err(error) => {
            summary.error = Some(error.to_string());
            return summary;
        }
    };
    let ds = dicom.dataset();
    let ts = dicom.transfer_syntax().to_string();
    summary.layout = Some(match dicom.layout {
        Layout::Part10 => "part10",
        Layout::Part10WithoutPreamble => "part10-without-preamble",
        Layout::BareDataSet => "bare-data-set",
    });
    summary.transfer_syntax_name = TransferSyntaxRegistry
        .get(&ts)
        .map(|t| t.name().to_string());
    summary.transfer_syntax = Some(ts);
    summary.sop_class_uid = attrs::string(ds, tags::SOP_CLASS_UID);
    summary.sop_instance_uid = attrs::string(ds, tags::SOP_INSTANCE_UID);
    summary.study_instance_uid = attrs::string(ds, tags::STUDY_INSTANCE_UID);
    summary.series_instance_uid = attrs::string(ds, tags::SERIES_INSTANCE_UID);
    summary.modality = attrs::string(ds, tags::MODALITY);
    summary.rows = attrs::int(ds, tags::ROWS);
    summary.columns = attrs::int(ds, tags::COLUMNS);
    summary.frames = Some(attrs::frame_count(ds));
    summary.samples_per_pixel = attrs::int(ds, tags::SAMPLES_PER_PIXEL);
    summary.bits_allocated = attrs::int(ds, tags::BITS_ALLOCATED);
    summary.bits_stored = attrs::int(ds, tags::BITS_STORED);
    summary.photometric_interpretation = attrs::string(ds, tags::PHOTOMETRIC_INTERPRETATION);
    if let Voi::Window(window) = voi::voi_of(ds, 0) {
        summary.window = Some(window);
    }
    match pixels::decode(&dicom) {
        Ok(frames) => summary.pixel_stats = stats(frames.values.iter().copied()),
        Err(error) => summary.error = Some(error.to_string()),
    }
    summary
}

fn stats(values: impl Iterator<Item = f32>) -> Option<PixelStats> {
    let (mut min, mut max, mut sum, mut count) = (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0usize);
    for value in values.map(f64::from) {
        min = min.min(value);
        max = max.max(value);
        sum += value;
        count += 1;
    }
    (count > 0).then(|| PixelStats {
        min,
        max,
        mean: sum / count as f64,
    })
}

impl FileSummary {
    /// A few human-readable lines (no patient attributes).
    pub fn to_text(&self) -> String {
        let mut out = format!("{}\n", self.file.display());
        let mut line = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                out.push_str(&format!("  {key:<28}{value}\n"));
            }
        };
        line(
            "transfer syntax",
            self.transfer_syntax
                .as_ref()
                .map(|ts| match &self.transfer_syntax_name {
                    Some(name) => format!("{ts} ({name})"),
                    None => ts.clone(),
                }),
        );
        line("layout", self.layout.map(str::to_string));
        line("SOP class", self.sop_class_uid.clone());
        line("SOP instance", self.sop_instance_uid.clone());
        line("study", self.study_instance_uid.clone());
        line("series", self.series_instance_uid.clone());
        line("modality", self.modality.clone());
        if let (Some(rows), Some(columns)) = (self.rows, self.columns) {
            line(
                "size",
                Some(format!(
                    "{rows} x {columns}, {} frame(s), {} sample(s), {}/{} bits",
                    self.frames.unwrap_or(1),
                    self.samples_per_pixel.unwrap_or(1),
                    self.bits_stored.unwrap_or(0),
                    self.bits_allocated.unwrap_or(0)
                )),
            );
        }
        line(
            "photometric interpretation",
            self.photometric_interpretation.clone(),
        );
        line(
            "window",
            self.window
                .map(|w| format!("centre {} width {} {:?}", w.center, w.width, w.function)),
        );
        line(
            "pixel values (after rescale)",
            self.pixel_stats
                .map(|s| format!("min {} max {} mean {:.3}", s.min, s.max, s.mean)),
        );
        line("error", self.error.clone());
        out
    }
}
