//! The VOI transform: modality values to display values in [0, 1], the form every model input
//! starts from. Implements PS3.3 C.11.2.1.2 (WindowCenter/WindowWidth with the VOI LUT
//! Function LINEAR, LINEAR_EXACT or SIGMOID, first window when several), the VOI LUT
//! Sequence (C.11.2.1.1, preferred when present, as toolkits do), a min/max stretch when
//! neither is present, and MONOCHROME1 inversion.

use dicom_dictionary_std::tags;
use ndarray::{Array2, ArrayView2, Zip};

use super::attrs::{self, DataSet};
use super::file::DicomFile;
use super::pixels::{Frames, Photometric, PixelError};

/// BT.601 luma weights, for colour inputs fed to grey-level models.
const LUMA: [f64; 3] = [0.299, 0.587, 0.114];

/// The VOI LUT Function of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VoiFunction {
    /// PS3.3 C.11.2.1.2.1, the default.
    Linear,
    /// C.11.2.1.3.2.
    LinearExact,
    /// C.11.2.1.3.1.
    Sigmoid,
}

/// A window: centre, width and function.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Window {
    /// WindowCenter.
    pub center: f64,
    /// WindowWidth.
    pub width: f64,
    /// VOILUTFunction.
    pub function: VoiFunction,
}

/// A VOI lookup table (one item of the VOI LUT Sequence).
#[derive(Debug, Clone, PartialEq)]
pub struct VoiTable {
    /// Stored value mapped to the first entry.
    pub first_mapped: f64,
    /// Bits of each output entry (output range 0 ..= 2^bits - 1).
    pub bits: u32,
    /// The entries.
    pub entries: Vec<f64>,
}

/// The VOI transform chosen for a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Voi {
    /// A lookup table.
    Table(VoiTable),
    /// A window.
    Window(Window),
    /// Neither: stretch the frame's own minimum..maximum to 0..1.
    MinMax,
}

/// The VOI transform for `frame` of `ds`: top-level attributes first, then the frame's
/// Frame VOI LUT functional group (enhanced multi-frame objects).
pub fn voi_of(ds: &DataSet, frame: u32) -> Voi {
    from_item(ds)
        .or_else(|| attrs::frame_macro(ds, frame, tags::FRAME_VOILUT_SEQUENCE).and_then(from_item))
        .unwrap_or(Voi::MinMax)
}

fn from_item(item: &DataSet) -> Option<Voi> {
    table_of(item)
        .map(Voi::Table)
        .or_else(|| window_of(item).map(Voi::Window))
}

fn table_of(item: &DataSet) -> Option<VoiTable> {
    let lut = attrs::first_item(item, tags::VOILUT_SEQUENCE)?;
    let descriptor = attrs::floats(lut, tags::LUT_DESCRIPTOR)?;
    let entries = attrs::floats(lut, tags::LUT_DATA)?;
    let (&first_mapped, &bits) = (descriptor.get(1)?, descriptor.get(2)?);
    let bits = bits as u32;
    ((1..=16).contains(&bits) && !entries.is_empty()).then_some(VoiTable {
        first_mapped,
        bits,
        entries,
    })
}

/// The first valid window of a data set or functional-group item.
pub fn window_of(item: &DataSet) -> Option<Window> {
    let center = *attrs::floats(item, tags::WINDOW_CENTER)?.first()?;
    let width = *attrs::floats(item, tags::WINDOW_WIDTH)?.first()?;
    let function = match attrs::string(item, tags::VOILUT_FUNCTION).as_deref() {
        Some("LINEAR_EXACT") => VoiFunction::LinearExact,
        Some("SIGMOID") => VoiFunction::Sigmoid,
        _ => VoiFunction::Linear,
    };
    // LINEAR requires width >= 1, the others width > 0 (C.11.2.1.2): otherwise the window is
    // not usable and the min/max stretch is the honest fallback.
    let valid = match function {
        VoiFunction::Linear => width >= 1.0,
        _ => width > 0.0,
    };
    valid.then_some(Window {
        center,
        width,
        function,
    })
}

/// Applies `voi` to one plane of modality values; MONOCHROME1 planes come out inverted so
/// that 1 is always bright.
pub fn apply(plane: ArrayView2<'_, f32>, voi: &Voi, invert: bool) -> Array2<f32> {
    let map: Box<dyn Fn(f64) -> f64> = match voi {
        Voi::Window(window) => Box::new(window_fn(*window)),
        Voi::Table(table) => {
            let top = f64::from((1u32 << table.bits) - 1);
            let last = table.entries.len() - 1;
            Box::new(move |x: f64| {
                let index = (x - table.first_mapped).floor().clamp(0.0, last as f64) as usize;
                table.entries[index] / top
            })
        }
        Voi::MinMax => {
            let (min, max) = plane
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |acc, v| {
                    (acc.0.min(f64::from(*v)), acc.1.max(f64::from(*v)))
                });
            let range = max - min;
            Box::new(move |x: f64| if range > 0.0 { (x - min) / range } else { 0.0 })
        }
    };
    let mut out = Array2::<f32>::zeros(plane.raw_dim());
    Zip::from(&mut out).and(plane).for_each(|o, v| {
        let y = map(f64::from(*v)).clamp(0.0, 1.0);
        *o = if invert { 1.0 - y } else { y } as f32;
    });
    out
}

fn window_fn(window: Window) -> impl Fn(f64) -> f64 {
    let Window {
        center: c,
        width: w,
        function,
    } = window;
    move |x: f64| match function {
        VoiFunction::Linear => {
            if x <= c - 0.5 - (w - 1.0) / 2.0 {
                0.0
            } else if x > c - 0.5 + (w - 1.0) / 2.0 {
                1.0
            } else {
                (x - (c - 0.5)) / (w - 1.0) + 0.5
            }
        }
        VoiFunction::LinearExact => {
            if x <= c - w / 2.0 {
                0.0
            } else if x > c + w / 2.0 {
                1.0
            } else {
                (x - c) / w + 0.5
            }
        }
        VoiFunction::Sigmoid => 1.0 / (1.0 + (-4.0 * (x - c) / w).exp()),
    }
}

/// One frame as grey levels in [0, 1], the input every model starts from: the VOI transform
/// for grey images, BT.601 luma scaled by the sample range for colour ones.
pub fn unit_grey(
    file: &DicomFile,
    frames: &Frames,
    frame: usize,
) -> Result<Array2<f32>, PixelError> {
    match frames.photometric {
        Photometric::Monochrome1 | Photometric::Monochrome2 => {
            let voi = voi_of(file.dataset(), frame as u32);
            let invert = frames.photometric == Photometric::Monochrome1;
            Ok(apply(frames.plane(frame, 0), &voi, invert))
        }
        Photometric::Rgb => {
            let top = f64::from((1u32 << frames.bits_stored.min(16)) - 1);
            let (r, g, b) = (
                frames.plane(frame, 0),
                frames.plane(frame, 1),
                frames.plane(frame, 2),
            );
            let mut out = Array2::<f32>::zeros(r.raw_dim());
            Zip::from(&mut out)
                .and(r)
                .and(g)
                .and(b)
                .for_each(|o, r, g, b| {
                    let luma =
                        LUMA[0] * f64::from(*r) + LUMA[1] * f64::from(*g) + LUMA[2] * f64::from(*b);
                    *o = (luma / top).clamp(0.0, 1.0) as f32;
                });
            Ok(out)
        }
        Photometric::PaletteColor => Err(PixelError::Unsupported {
            path: file.path.clone(),
            sop: file.sop_instance_uid().unwrap_or_default(),
            what: "PALETTE COLOR images as model input".into(),
        }),
    }
}
