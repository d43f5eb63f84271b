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
//! inputs -> dicom::scan (headers, UIDs checked, grouped, ordered)
//!        -> config (the rule that takes each series: models, methods, slices)
//!        -> dicom::slices (dicom::pixels: decode, Modality LUT; dicom::voi: window to [0, 1])
//!        -> model (preprocess; classify on runtime's ONNX Runtime sessions;
//!                  probes through autodiff's gradient models)
//!        -> explain (methods; quality: anatomy's brain mask, faithfulness, agreement)
//!        -> render -> dicom::secondary_capture (overlays, written whole by files)
//!        -> output (report.json over the earlier one: output::replace_and_write)
//! ```
//!
//! [`pipeline::Engine`] runs it for one study; `run`, the daemon ([`watch`]) and the Orthanc
//! plugin share it.
//!
//! ## Modules
//!
//! Foundations (import no other module):
//!
//! - [`runtime`]: ONNX Runtime: library search, execution providers, sessions, the
//!   optimised-graph cache, model checksums, CUDA libraries (with `cuda`).
//! - [`anatomy`]: the brain mask of a windowed slice (Otsu thresholds).
//! - [`files`]: atomic writes: every output whole or not at all.
//! - [`logging`]: how paths under the input folders appear in log lines.
//! - [`noise`]: seeded noise for the methods that sample and for SAE training.
//! - [`progress`]: the [`progress::Progress`] trait of long work (the CLI draws a bar).
//!
//! Above them:
//!
//! - [`onnx`]: ONNX files as data: protobuf messages, load/save, tensors, shapes.
//! - [`dicom`]: reading files, grouping studies and series, decoding pixels, the VOI
//!   transform, slice loading, the Secondary Capture writer and the C-STORE client.
//! - [`autodiff`]: gradient models: reverse-mode differentiation as an ONNX graph transform,
//!   and their on-disk cache.
//! - [`output`]: `report.json`, output paths, and replacing an earlier run's outputs.
//! - [`render`]: heat map, colour map and legend into the overlay picture.
//! - [`model`]: model manifests, preprocessing, batched classification, probes (gradients
//!   and inner tensors for the methods).
//! - [`sae`]: sparse autoencoders on a model's activations: training, concepts, fitting.
//! - [`explain`]: explanation methods (the [`explain::Method`] trait), their parameters and
//!   the quality checks.
//! - [`config`]: the site configuration and the rules that select series.
//! - [`pipeline`]: the [`pipeline::Engine`] that turns a study into overlays and a report,
//!   and the [`pipeline::Outcome`] of a run.
//! - [`audit`]: the models and methods over a labelled image set (`audit.json`,
//!   `audit.html`).
//! - [`watch`]: the daemon: drop folder, job journal, workers, delivery, metrics.
//! - [`queue`]: the work queue on RabbitMQ: the daemon publishes settled studies as jobs
//!   (`watch --broker`), workers on other machines process them (`worker`).
//! - [`cli`]: the command-line interface (`main.rs` only calls [`cli::main`]); it maps
//!   outcomes and errors to exit codes.
//!
//! Each module imports only modules listed before it (`tests/module_graph.rs` checks that
//! the imports have no cycle); `ARCHITECTURE.md` draws the layers.
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
//! - `cuda`: builds the CUDA execution provider; needs the onnxruntime-gpu library at run
//!   time (`make setup GPU=1`). Without a GPU it falls back to the CPU, unless the
//!   configuration requires the GPU.
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
pub mod queue;
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
