//! The audit's gallery: for the correct predictions whose evidence lies furthest outside the
//! brain, the slice and the map side by side (the summary picture of [`crate::render`], with
//! its NOT FOR DIAGNOSTIC USE legend), as JPEG. The maps are made again here: the journal keeps
//! figures, not maps, and a gallery is a handful of images.

use snafu::{ResultExt, Snafu};

use super::journal::ImageRecord;
use super::report::{Failure, GalleryEntry};
use crate::config::Settings;
use crate::dicom::slices::{SliceError, load_grey};
use crate::explain::{self, ExplainError, Method};
use crate::model::Classifier;
use crate::model::classifier::argmax;
use crate::model::preprocess::{self, resize_bilinear};
use crate::render::{self, ColourMap, Font, Legend, Panel, RenderError, Style};

/// The gallery's slices are drawn at most this many pixels on a side, so a page of a few
/// dozen pictures stays a few megabytes.
const SIDE: usize = 256;

/// JPEG quality of the embedded pictures: the legend's text stays sharp at a fifth of the
/// PNG's size.
const JPEG_QUALITY: u8 = 88;

/// Renders `candidates` (record, in-brain fraction) for `method`; the pictures, and the
/// images that could not be drawn.
pub(super) fn render(
    model: &Classifier,
    method: &dyn Method,
    candidates: &[(&ImageRecord, f32)],
    settings: &Settings,
    font: &Font,
) -> (Vec<GalleryEntry>, Vec<Failure>) {
    let mut entries = Vec::new();
    let mut failures = Vec::new();
    for &(record, fraction) in candidates {
        match picture(model, method, record, fraction, settings, font) {
            Ok(jpeg) => entries.push(GalleryEntry {
                image: record.image.clone(),
                label: record.label.clone(),
                probability: record
                    .probabilities
                    .get(argmax(record.probabilities.iter().copied()))
                    .copied()
                    .unwrap_or(f32::NAN),
                in_brain_fraction: fraction,
                jpeg,
            }),
            Err(error) => failures.push(Failure {
                file: record.image.clone(),
                model: model.manifest().name.clone(),
                method: Some(method.name().to_string()),
                message: format!("gallery: {error}"),
            }),
        }
    }
    (entries, failures)
}

/// Why a gallery picture could not be drawn.
#[derive(Debug, Snafu)]
enum PictureError {
    #[snafu(display("{source}"))]
    Load { source: SliceError },
    #[snafu(display("{source}"))]
    Explain { source: ExplainError },
    #[snafu(display("{source}"))]
    Render { source: RenderError },
    #[snafu(display("cannot encode the picture: {source}"))]
    Encode { source: image::ImageError },
}

fn picture(
    model: &Classifier,
    method: &dyn Method,
    record: &ImageRecord,
    fraction: f32,
    settings: &Settings,
    font: &Font,
) -> Result<Vec<u8>, PictureError> {
    let manifest = model.manifest();
    let grey = load_grey(&record.image).context(LoadSnafu)?;
    let input = preprocess::model_input(grey.view(), &manifest.input);
    let class = argmax(record.probabilities.iter().copied());
    let map = method
        .explain(model, input.view(), class)
        .context(ExplainSnafu)?;
    let (rows, columns) = grey.dim();
    let scale = (SIDE as f32 / rows.max(columns) as f32).min(1.0);
    let (rows, columns) = (
        ((rows as f32 * scale).round() as usize).max(1),
        ((columns as f32 * scale).round() as usize).max(1),
    );
    let small = resize_bilinear(grey.view(), rows, columns).mapv(|v| v.clamp(0.0, 1.0));
    let heat = explain::to_slice(map.heat.view(), rows, columns);
    let style = Style {
        colour_map: ColourMap::by_name(&settings.defaults.colour_map).context(RenderSnafu)?,
        opacity: settings.defaults.opacity,
    };
    let legend = Legend {
        model_name: manifest.name.clone(),
        model_version: manifest.version.clone(),
        trained: manifest.trained,
        method: method.name().to_string(),
        class_label: manifest.labels[class].clone(),
        probability: record.probabilities[class],
        notes: vec![format!("correct: the true label is {}", record.label)],
    };
    let panel = Panel {
        title: method.name().to_string(),
        caption: format!("in brain {:.0}%", 100.0 * fraction),
        flagged: true,
        heat: heat.view(),
    };
    let image = render::render_summary(small.view(), &[panel], &style, &legend, font)
        .context(RenderSnafu)?;
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, JPEG_QUALITY)
        .encode(
            &image.pixels,
            image.columns,
            image.rows,
            image::ExtendedColorType::Rgb8,
        )
        .context(EncodeSnafu)?;
    Ok(jpeg)
}
