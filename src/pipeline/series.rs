//! One series under one rule: classify every slice with every model of the plan, choose
//! the slices to explain, explain them with every method, render and write the overlays.

use std::path::Path;
use std::time::Instant;

use ndarray::ArrayView3;

use super::Engine;
use super::slices::{self, LoadedSlice};
use crate::config::{Rule, SlicePolicy};
use crate::dicom::scan::Series;
use crate::dicom::secondary_capture::{self, Derivation, OverlayUids, Placement, Timestamp};
use crate::explain::{self, Method};
use crate::model::Classifier;
use crate::model::preprocess;
use crate::output::report::Probabilities;
use crate::output::{
    self, ExplanationReport, ModelReport, Quality, ReportError, SeriesPrediction, SeriesReport,
    SliceReport,
};
use crate::render::{self, ColourMap, Legend, Style};

/// What processing a series needs from its surroundings.
pub struct SeriesContext<'a> {
    /// The engine.
    pub engine: &'a Engine,
    /// The rule that selected the series.
    pub rule: &'a Rule,
    /// `<out>/<StudyInstanceUID>`.
    pub study_dir: &'a Path,
    /// When the outputs are created.
    pub created: &'a Timestamp,
}

impl SeriesContext<'_> {
    /// Processes `series`; errors go to `errors` and into the model reports.
    pub fn process(&self, series: &Series, errors: &mut Vec<ReportError>) -> SeriesReport {
        let span = tracing::info_span!("series", uid = %series.uid, rule = %self.rule.name);
        let _entered = span.enter();
        let slices = slices::load(series, errors);
        let mut report = SeriesReport {
            series_instance_uid: series.uid.clone(),
            rule: self.rule.name.clone(),
            slice_count: series.slices.len(),
            models: Vec::new(),
        };
        if slices.is_empty() {
            errors.push(ReportError {
                file: series.uid.clone(),
                message: format!("series {}: no slice could be decoded", series.uid),
            });
            return report;
        }
        let models = self.engine.plan_models(&self.rule.plan);
        for (model_index, model) in models.iter().enumerate() {
            let model_report = self.process_model(series, &slices, model, model_index, errors);
            report.models.push(model_report);
        }
        report
    }

    fn process_model(
        &self,
        series: &Series,
        slices: &[LoadedSlice],
        model: &Classifier,
        model_index: usize,
        errors: &mut Vec<ReportError>,
    ) -> ModelReport {
        let manifest = model.manifest();
        let mut report = ModelReport {
            model: manifest.name.clone(),
            version: manifest.version.clone(),
            trained: manifest.trained,
            provider: model.provider().to_string(),
            series_prediction: None,
            slices: Vec::new(),
            explanations: Vec::new(),
            error: None,
        };
        let started = Instant::now();
        let inputs: Vec<_> = slices
            .iter()
            .map(|s| preprocess::model_input(s.grey.view(), &manifest.input))
            .collect();
        let views: Vec<ArrayView3<f32>> = inputs.iter().map(|i| i.view()).collect();
        let probabilities = match model.predict(preprocess::batch(&views).view()) {
            Ok(p) => p,
            Err(error) => {
                let message = format!("series {}: {error}", series.uid);
                errors.push(ReportError {
                    file: series.uid.clone(),
                    message: message.clone(),
                });
                report.error = Some(message);
                return report;
            }
        };
        tracing::info!(
            model = %manifest.name,
            slices = slices.len(),
            seconds_per_slice = started.elapsed().as_secs_f64() / slices.len() as f64,
            "classified"
        );
        let labels = &manifest.labels;
        let no_tumour = manifest.no_tumour_index();
        let predicted: Vec<usize> = probabilities
            .outer_iter()
            .map(|row| argmax(row.iter().copied()))
            .collect();
        for (slice, (row, class)) in slices
            .iter()
            .zip(probabilities.outer_iter().zip(&predicted))
        {
            report.slices.push(SliceReport {
                sop_instance_uid: slice.sop_instance_uid.clone(),
                frame: slice.frame,
                label: labels[*class].clone(),
                probabilities: Probabilities(
                    labels.iter().cloned().zip(row.iter().copied()).collect(),
                ),
            });
        }
        // how tumour-like each slice is: its highest probability of a tumour class
        let tumour_score: Vec<f32> = probabilities
            .outer_iter()
            .map(|row| {
                row.iter()
                    .enumerate()
                    .filter(|(i, _)| Some(*i) != no_tumour)
                    .map(|(_, p)| *p)
                    .fold(0.0, f32::max)
            })
            .collect();
        report.series_prediction = Some(self.series_prediction(&probabilities, no_tumour, labels));

        let plan = &self.rule.plan;
        let mut order: Vec<usize> = (0..slices.len()).collect();
        order.sort_by(|a, b| tumour_score[*b].total_cmp(&tumour_score[*a]).then(a.cmp(b)));
        let chosen: Vec<usize> = match plan.slices {
            SlicePolicy::All => (0..slices.len()).collect(),
            SlicePolicy::TopK(k) => order.iter().copied().take(k.max(1)).collect(),
            SlicePolicy::None => order.iter().copied().take(1).collect(),
        };
        let colour_map = match ColourMap::by_name(&plan.colour_map) {
            Ok(map) => map,
            Err(error) => {
                report.error = Some(error.to_string());
                return report;
            }
        };
        let style = Style {
            colour_map,
            opacity: plan.opacity,
        };
        for method_name in self.engine.plan_methods(plan) {
            let method = match explain::method_by_name(&method_name, &self.engine.methods) {
                Ok(method) => method,
                Err(error) => {
                    errors.push(ReportError {
                        file: series.uid.clone(),
                        message: error.to_string(),
                    });
                    continue;
                }
            };
            for &index in &chosen {
                let explained = self.explain_slice(
                    &slices[index],
                    &inputs[index],
                    model,
                    model_index,
                    method.as_ref(),
                    predicted[index],
                    probabilities[[index, predicted[index]]],
                    &style,
                    series,
                );
                match explained {
                    Ok(explanation) => report.explanations.push(explanation),
                    Err(message) => {
                        tracing::error!("{message}");
                        errors.push(ReportError {
                            file: slices[index].sop_instance_uid.clone(),
                            message,
                        });
                    }
                }
            }
        }
        report
    }

    fn series_prediction(
        &self,
        probabilities: &ndarray::Array2<f32>,
        no_tumour: Option<usize>,
        labels: &[String],
    ) -> SeriesPrediction {
        let mut best: Option<(usize, f32)> = None;
        for row in probabilities.outer_iter() {
            for (class, p) in row.iter().enumerate() {
                if Some(class) != no_tumour && best.is_none_or(|(_, q)| *p > q) {
                    best = Some((class, *p));
                }
            }
        }
        let threshold = self.engine.settings.prediction.tumour_threshold;
        match (best, no_tumour) {
            (Some((class, p)), _) if p >= threshold => SeriesPrediction {
                label: labels[class].clone(),
                probability: p,
            },
            (best, Some(none)) => SeriesPrediction {
                label: labels[none].clone(),
                probability: 1.0 - best.map_or(0.0, |(_, p)| p),
            },
            // a model without a "notumor" label: its most probable class anywhere
            (best, None) => {
                let (class, p) = best.unwrap_or((0, 0.0));
                SeriesPrediction {
                    label: labels[class].clone(),
                    probability: p,
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn explain_slice(
        &self,
        slice: &LoadedSlice,
        input: &ndarray::Array3<f32>,
        model: &Classifier,
        model_index: usize,
        method: &dyn Method,
        class: usize,
        probability: f32,
        style: &Style,
        series: &Series,
    ) -> Result<ExplanationReport, String> {
        let started = Instant::now();
        let manifest = model.manifest();
        let where_ = format!(
            "{} frame {} ({} {})",
            slice.sop_instance_uid,
            slice.frame,
            manifest.name,
            method.name()
        );
        let map = method
            .explain(model, input.view(), class)
            .map_err(|e| format!("{where_}: {e}"))?;
        let (rows, columns) = slice.grey.dim();
        let heat = explain::to_slice(map.heat.view(), rows, columns);
        let label = manifest.labels[class].clone();
        let legend = Legend {
            model_name: manifest.name.clone(),
            model_version: manifest.version.clone(),
            trained: manifest.trained,
            method: method.name().to_string(),
            class_label: label.clone(),
            probability,
            notes: Vec::new(),
        };
        let image = render::render_overlay(
            slice.grey.view(),
            heat.view(),
            style,
            &legend,
            &self.engine.font,
        )
        .map_err(|e| format!("{where_}: {e}"))?;
        let derivation = Derivation {
            model_name: manifest.name.clone(),
            model_version: manifest.version.clone(),
            model_sha256: manifest.sha256.clone(),
            trained: manifest.trained,
            method: method.name().to_string(),
            target_layer: map.target_layer.clone(),
            class_label: label.clone(),
            probability,
            colour_map: style.colour_map.name().to_string(),
        };
        let method_index = crate::config::METHOD_NAMES
            .iter()
            .position(|m| *m == method.name())
            .unwrap_or(0);
        let placement = Placement {
            source_frame: slice.frame,
            instance_number: slice.position,
            series_number: self.engine.settings.output.series_number_base
                + 1
                + (model_index * crate::config::METHOD_NAMES.len() + method_index) as u32,
        };
        let object = secondary_capture::build(
            slice.file.dataset(),
            &image,
            &derivation,
            placement,
            self.created,
        )
        .map_err(|e| format!("{where_}: {e}"))?;
        let uids = OverlayUids::derive(
            &series.uid,
            &slice.sop_instance_uid,
            slice.frame,
            &derivation,
        );
        let relative = output::overlay_relative_path(&uids.series, &uids.instance);
        let path = self.study_dir.join(&relative);
        secondary_capture::write_atomically(&object, &path)
            .map_err(|e| format!("{where_}: {e}"))?;
        Ok(ExplanationReport {
            method: method.name().to_string(),
            sop_instance_uid: slice.sop_instance_uid.clone(),
            frame: slice.frame,
            class: label,
            probability,
            output_sop_instance_uid: uids.instance,
            output_series_instance_uid: uids.series,
            output_file: relative,
            parameters: map.parameters,
            model_passes: map.passes,
            seconds: started.elapsed().as_secs_f64(),
            quality: Quality::default(),
        })
    }
}

fn argmax(values: impl Iterator<Item = f32>) -> usize {
    values
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}
