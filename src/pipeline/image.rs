//! One image, one model, one method: what `dicom-xai explain` does (docs/design.md section 2). The image
//! is a DICOM file (first frame, windowed as the pipeline does) or a PNG/JPEG taken as grey
//! levels already windowed to [0, 1]. Writes `heatmap.npy` (float32, rows x columns, >= 0),
//! `overlay.png` and `explain.json` into the output folder, and for a DICOM image with
//! `"pmap"` in `[output] formats` `map.dcm`, the map as a one-frame Parametric Map.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::Axis;
use serde_json::json;

use super::{RunError, runtime_options};
use crate::config::{OutputFormat, Settings};
use crate::dicom::derived::{self, Timestamp};
use crate::dicom::file::DicomFile;
use crate::dicom::parametric_map::{self, MapFrame};
use crate::dicom::slices::load_image;
use crate::explain;
use crate::explain::quality;
use crate::model::{Classifier, Manifest, preprocess};
use crate::output::report::Probabilities;
use crate::render::{self, ColourMap, Font, Legend, Style};
use crate::runtime::Runtime;

/// What to explain.
#[derive(Debug, Clone)]
pub struct ExplainRequest {
    /// A model name of the configuration, or a manifest file (`.toml`).
    pub model: String,
    /// The method.
    pub method: String,
    /// The class to explain (default: the predicted one).
    pub class: Option<String>,
    /// The image (.dcm, .png, .jpg).
    pub image: PathBuf,
    /// The output folder.
    pub out: PathBuf,
    /// A sparse autoencoder for the `sae` method, instead of the manifest's.
    pub sae: Option<PathBuf>,
}

fn configuration(message: String) -> RunError {
    RunError::Configuration { message }
}

/// The manifest named by `model`: a `.toml` file, or a configured model's name.
/// The manifest of `model`: a `.toml` manifest file, or a model name of the configuration.
pub fn manifest_for(settings: &Settings, model: &str) -> Result<Manifest, RunError> {
    let as_path = Path::new(model);
    if as_path.extension().is_some_and(|e| e == "toml") && as_path.is_file() {
        return Manifest::load(as_path).map_err(|e| configuration(e.to_string()));
    }
    let entry = settings
        .models
        .iter()
        .find(|m| m.name == model)
        .ok_or_else(|| {
            let names: Vec<&str> = settings.models.iter().map(|m| m.name.as_str()).collect();
            configuration(format!(
                "{}: no model {model:?} (configured: {}); or give a manifest .toml file",
                settings.source.display(),
                names.join(", ")
            ))
        })?;
    Manifest::load(&entry.manifest).map_err(|e| configuration(e.to_string()))
}

/// Explains one image and writes `heatmap.npy`, `overlay.png` and `explain.json` to
/// `request.out`; returns the path of `explain.json`.
pub fn explain_image(settings: &Settings, request: &ExplainRequest) -> Result<PathBuf, RunError> {
    let manifest = manifest_for(settings, &request.model)?;
    let mut methods = settings.methods.clone();
    methods.sae.file = request.sae.clone();
    let method = explain::method_by_name(&request.method, &methods)
        .map_err(|e| configuration(e.to_string()))?;
    let class =
        match &request.class {
            Some(label) => Some(manifest.labels.iter().position(|l| l == label).ok_or_else(
                || {
                    configuration(format!(
                        "class {label:?} is not a label of {} ({})",
                        manifest.name,
                        manifest.labels.join(", ")
                    ))
                },
            )?),
            None => None,
        };
    let colour_map = ColourMap::by_name(&settings.defaults.colour_map)
        .map_err(|e| configuration(e.to_string()))?;
    let font = Font::find(None).map_err(|source| RunError::Font { source })?;
    let (grey, dicom) = load_image(&request.image).map_err(|e| RunError::Input {
        message: e.to_string(),
    })?;

    let runtime =
        Runtime::init(runtime_options(settings)).map_err(|source| RunError::Runtime { source })?;
    let model = Classifier::load(&runtime, manifest, settings.runtime.batch_size)
        .map_err(|source| RunError::Model { source })?;
    let manifest = model.manifest();
    let input = preprocess::model_input(grey.view(), &manifest.input);
    let model_failed = |e: crate::model::ModelError| RunError::Input {
        message: format!("{}: {e}", request.image.display()),
    };
    let probabilities = model
        .predict(input.view().insert_axis(Axis(0)))
        .map_err(model_failed)?;
    let row = probabilities.row(0);
    let predicted = crate::model::classifier::argmax(row.iter().copied());
    let class = class.unwrap_or(predicted);

    let started = Instant::now();
    let policy = settings.quality;
    let mask = crate::anatomy::brain_mask(grey.view());
    let brain_fraction = crate::anatomy::brain_fraction(&mask);
    let brain_flags =
        crate::anatomy::slice_flags(brain_fraction, settings.prediction.min_brain_fraction);
    let mut slice = quality::SliceCheck::new(mask);
    let quality::AssessedMap {
        map,
        heat,
        assessment,
    } = quality::explain_and_assess(
        &model,
        method.as_ref(),
        input.view(),
        class,
        &mut slice,
        &policy,
    )
    .map_err(|e| RunError::Input {
        message: format!("{}: {e}", request.image.display()),
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let quality_report = assessment.to_report();

    let write_error = |path: &Path, e: String| RunError::Output {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    };
    std::fs::create_dir_all(&request.out).map_err(|source| RunError::Output {
        path: request.out.clone(),
        source,
    })?;
    let heatmap_path = request.out.join("heatmap.npy");
    ndarray_npy::write_npy(&heatmap_path, &heat)
        .map_err(|e| write_error(&heatmap_path, e.to_string()))?;
    let mut notes = quality_report.legend_notes();
    if !brain_flags.is_empty() {
        notes.insert(0, crate::anatomy::NO_BRAIN_WARNING.to_string());
    }
    let legend = Legend {
        model_name: manifest.name.clone(),
        model_version: manifest.version.clone(),
        trained: manifest.trained,
        method: map.label(method.name()),
        class_label: manifest.labels[class].clone(),
        probability: row[class],
        notes,
    };
    let style = Style {
        colour_map,
        opacity: settings.defaults.opacity,
    };
    let overlay = render::render_overlay(grey.view(), heat.view(), &style, &legend, &font)
        .map_err(|e| write_error(&request.out, e.to_string()))?;
    let overlay_path = request.out.join("overlay.png");
    render::save_png(&overlay, &overlay_path)
        .map_err(|e| write_error(&overlay_path, e.to_string()))?;

    let map_file = match &dicom {
        Some(source) if settings.output.formats.contains(&OutputFormat::Pmap) => {
            let path = request.out.join(MAP_FILE);
            let explained = (method.name(), &map, manifest.labels[class].as_str());
            let object = one_frame_map(settings, request, &model, source, explained, &heat)
                .map_err(|e| write_error(&path, e.to_string()))?;
            derived::write_atomically(&object, &path)
                .map_err(|e| write_error(&path, e.to_string()))?;
            Some(MAP_FILE)
        }
        _ => None,
    };
    let report = json!({
        "map": map_file,
        "image": request.image,
        "model": {"name": manifest.name, "version": manifest.version, "trained": manifest.trained, "provider": model.provider()},
        "prediction": {
            "label": manifest.labels[predicted],
            "probability": row[predicted],
            "brain_fraction": brain_fraction,
            "flags": brain_flags,
        },
        "probabilities": Probabilities(manifest.labels.iter().cloned().zip(row.iter().copied()).collect()),
        "class": manifest.labels[class],
        "method": method.name(),
        "target_layer": map.target_layer,
        "parameters": map.parameters,
        "model_passes": map.passes + assessment.passes(),
        "seconds": seconds,
        "heatmap": "heatmap.npy",
        "overlay": "overlay.png",
        "quality": quality_report,
    });
    let report_path = request.out.join("explain.json");
    let bytes =
        serde_json::to_vec_pretty(&report).map_err(|e| write_error(&report_path, e.to_string()))?;
    crate::files::write_atomically(&report_path, &bytes).map_err(|source| RunError::Output {
        path: report_path.clone(),
        source,
    })?;
    Ok(report_path)
}

/// The Parametric Map `explain` writes beside `heatmap.npy` (DICOM images only).
pub const MAP_FILE: &str = "map.dcm";

/// `heat` (on the grid of `source`, the image read) as a one-frame Parametric Map of it:
/// what `run` writes for a series, for this one slice, in the series of `run`'s map.
fn one_frame_map(
    settings: &Settings,
    request: &ExplainRequest,
    model: &Classifier,
    source: &DicomFile,
    (method, map, class_label): (&str, &explain::ModelMap, &str),
    heat: &ndarray::Array2<f32>,
) -> Result<dicom_object::DefaultDicomObject, RunError> {
    let derivation = super::map_derivation(model, method, map);
    let frame = MapFrame {
        source: source.dataset(),
        source_frame: 0,
        class_label,
        map: heat.view(),
    };
    let (object, _) = parametric_map::build(
        &[frame],
        &derivation,
        settings.output.series_number_base + 1,
        &Timestamp::now(),
    )
    .map_err(|e| RunError::Input {
        message: format!("{}: {e}", request.image.display()),
    })?;
    Ok(object)
}
