//! # dicom-xai
//!
//! Explainability for brain-MRI classifiers, inside hospital DICOM workflows. New studies
//! arrive from a PACS; dicom-xai classifies their slices with ONNX models (DenseNet169, Vision
//! Transformers, any classifier with a manifest), explains each prediction with methods
//! written here, checks that the evidence lies inside the brain, and writes Secondary Capture
//! overlays back into the study, so radiologists see them in any viewer.
//!
//! ## Pipeline
//!
//! ```text
//! inputs -> dicom::scan (group, order) -> dicom::pixels (decode, rescale) -> dicom::voi ([0,1])
//!        -> config (rules) -> model (preprocess, infer) -> explain -> render
//!        -> dicom::secondary_capture -> output (report.json)
//! ```
//!
//! ## Modules
//!
//! - [`dicom`]: reading files, grouping studies and series, decoding pixels, the VOI
//!   transform, and the Secondary Capture writer.
//! - [`config`]: the site configuration and the rules that select series.
//! - [`model`]: ONNX Runtime, model manifests, preprocessing, batched classification.
//! - [`onnx`]: ONNX files as data: protobuf messages, load/save, tensors, shapes.
//! - [`explain`]: explanation methods (the [`explain::Method`] trait).
//! - [`render`]: heat map, colour map and legend into the overlay picture.
//! - [`pipeline`]: the [`pipeline::Engine`] that turns a study into overlays and a report.
//! - [`output`]: `report.json` and output paths.
//! - [`audit`]: the models and methods over a labelled image set (`audit.json`,
//!   `audit.html`).
//! - [`logging`]: how paths under the input folders appear in log lines.
//! - [`cli`]: the command-line interface (`main.rs` only calls [`cli::main`]).
//!
//! ## Example: decode a slice to model-ready grey levels
//!
//! ```no_run
//! use dicom_xai::dicom::{file, pixels, voi};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let slice = file::open("IM0001.dcm".as_ref(), file::Depth::Full)?;
//! let frames = pixels::decode(&slice)?;
//! let grey = voi::unit_grey(&slice, &frames, 0)?; // rows x columns, values in [0, 1]
//! assert!(grey.iter().all(|v| (0.0..=1.0).contains(v)));
//! # Ok(())
//! # }
//! ```
//!
//! ## Features
//!
//! - `jpeg-ls` (default): JPEG-LS decoding through CharLS (needs cmake to build).
//! - `jpeg2000` (default): JPEG 2000 decoding through a pure-Rust OpenJPEG port.
//!
//! Native, deflated, RLE and JPEG (baseline, extended 8-bit, lossless) are always built in.

#![warn(missing_docs)]

pub mod anatomy;
pub mod audit;
pub mod autodiff;
pub mod cli;
pub mod config;
pub mod dicom;
pub mod explain;
pub mod files;
pub mod logging;
pub mod model;
pub mod noise;
pub mod onnx;
pub mod output;
pub mod pipeline;
pub mod progress;
pub mod render;
pub mod runtime;
pub mod sae;
pub mod watch;

/// The message of a caught panic's payload: the `String` or `&str` it carries, else
/// "unknown panic". Shared by every place that turns a panic into one job's error.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}
