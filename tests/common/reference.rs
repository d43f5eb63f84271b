//! Comparison of our decoding with pydicom and a numpy VOI implementation
//! (`tests/support/pydicom_reference.py`).

use std::ffi::OsStr;
use std::path::PathBuf;

use dicom_xai::dicom::{file, pixels, voi};
use ndarray::{ArrayD, Axis};
use ndarray_npy::read_npy;

/// Lossless syntaxes must match exactly; f32 storage of rescaled values rounds at 2^-24.
pub const LOSSLESS_RELATIVE: f64 = 1e-6;
/// Lossy codecs: two conforming decoders may differ by an IDCT rounding step or two.
pub const LOSSY_MAX_ABS: f64 = 4.0;
/// Grey levels in [0, 1] against the numpy VOI reference.
pub const UNIT_ABS: f64 = 1e-6;

const LOSSY_SYNTAXES: &[&str] = &[
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.91",
];

/// One file of the reference run.
#[derive(serde::Deserialize)]
pub struct Entry {
    /// The file.
    pub file: PathBuf,
    id: usize,
    /// Whether pydicom decoded it.
    pub ok: bool,
    /// Its transfer syntax, when decoded.
    #[serde(default)]
    pub transfer_syntax: Option<String>,
    #[serde(default)]
    has_unit: bool,
}

/// The reference values of a set of files, computed once.
pub struct References {
    dir: tempfile::TempDir,
    /// One entry per file, in the order given.
    pub entries: Vec<Entry>,
}

impl References {
    /// Runs pydicom and numpy over `files`.
    pub fn compute(files: &[PathBuf]) -> References {
        let dir = tempfile::tempdir().unwrap();
        let mut args: Vec<&OsStr> = vec![dir.path().as_os_str()];
        args.extend(files.iter().map(|f| f.as_os_str()));
        super::run_support_script("pydicom_reference.py", &args);
        let index = std::fs::read(dir.path().join("index.json")).unwrap();
        let entries = serde_json::from_slice(&index).unwrap();
        References { dir, entries }
    }

    /// pydicom's values of an entry ([frames, rows, columns, samples], after rescale).
    pub fn values(&self, entry: &Entry) -> ArrayD<f64> {
        read_npy(self.path(entry, "values")).unwrap()
    }

    fn path(&self, entry: &Entry, kind: &str) -> PathBuf {
        self.dir.path().join(format!("{}.{kind}.npy", entry.id))
    }

    /// Decodes `entry`'s file with our code and compares values and grey levels.
    pub fn compare(&self, entry: &Entry) -> Result<(), String> {
        let decode_error = |e: String| format!("pydicom decodes it, we fail: {e}");
        let dicom =
            file::open(&entry.file, file::Depth::Full).map_err(|e| decode_error(e.to_string()))?;
        let frames = pixels::decode(&dicom).map_err(|e| decode_error(e.to_string()))?;
        let theirs = self.values(entry);
        let ours = frames.values.mapv(f64::from).into_dyn();
        if ours.shape() != theirs.shape() {
            return Err(format!(
                "shape {:?} vs pydicom {:?}",
                ours.shape(),
                theirs.shape()
            ));
        }
        let ts = entry.transfer_syntax.clone().unwrap_or_default();
        let lossy = LOSSY_SYNTAXES.contains(&ts.as_str());
        let diff = max_abs_diff(&ours, &theirs, !lossy);
        let limit = if lossy {
            LOSSY_MAX_ABS
        } else {
            LOSSLESS_RELATIVE
        };
        if diff > limit {
            return Err(format!(
                "({ts}) values differ from pydicom by {diff} (limit {limit})"
            ));
        }
        if entry.has_unit && !lossy {
            let reference: ArrayD<f64> = read_npy(self.path(entry, "unit")).unwrap();
            for (frame, expected) in reference.axis_iter(Axis(0)).enumerate() {
                let grey = voi::unit_grey(&dicom, &frames, frame).map_err(|e| e.to_string())?;
                let diff = max_abs_diff(
                    &grey.mapv(f64::from).into_dyn(),
                    &expected.to_owned(),
                    false,
                );
                if diff > UNIT_ABS {
                    return Err(format!(
                        "frame {frame}: [0,1] grey differs from numpy VOI by {diff}"
                    ));
                }
            }
        }
        Ok(())
    }
}

fn max_abs_diff(ours: &ArrayD<f64>, theirs: &ArrayD<f64>, relative: bool) -> f64 {
    ours.iter()
        .zip(theirs.iter())
        .map(|(a, b)| {
            let d = (a - b).abs();
            if relative { d / b.abs().max(1.0) } else { d }
        })
        .fold(0.0, f64::max)
}
