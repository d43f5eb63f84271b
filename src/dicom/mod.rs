//! DICOM in and out: finding and grouping files, decoding pixels to model-ready grey levels,
//! and writing Secondary Capture overlays.
//!
//! - [`mod@file`]: open one file (Part 10 with or without preamble, or a bare data set), after
//!   [`bounds`] has checked declared value lengths against the bytes present and the depth of
//!   nested sequences.
//! - [`geometry`]: where a slice lies (position, orientation, spacing, frame of reference).
//! - [`mod@scan`]: walk the inputs, group into studies and series, order slices in space.
//! - [`pixels`]: decode any supported transfer syntax, apply the Modality LUT.
//! - [`voi`]: the VOI transform (window, VOI LUT, min/max) to [0, 1].
//! - [`slices`]: a series' slices, or one image file, as windowed grey levels.
//! - [`derived`]: what every object derived from a slice shares (provenance, labels, patient
//!   and study, references, writing whole).
//! - [`parametric_map`]: the float Parametric Map of a method's maps over a series.
//! - [`structured_report`]: the TID 1500 Structured Report of a study's findings.
//! - [`secondary_capture`]: the overlay writer, with deterministic [`uid`]s.
//! - [`inspect`]: the per-file summary behind `dicom-xai inspect`.
//! - [`attrs`]: typed attribute reads, with enhanced multi-frame functional groups.
//! - [`store`]: the C-STORE client that sends overlays to a PACS.

pub mod attrs;
pub mod bounds;
pub mod derived;
pub mod file;
pub mod geometry;
pub mod inspect;
pub mod parametric_map;
pub mod pixels;
pub mod scan;
pub mod secondary_capture;
pub mod slices;
pub mod store;
pub mod structured_report;
pub mod uid;
pub mod voi;

pub use file::{DicomFile, ReadError};
pub use pixels::{Frames, PixelError};
pub use scan::{Scan, Series, SliceRef, Study, scan};
