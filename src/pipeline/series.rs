//! One series under one rule: classify every slice with every model of the plan, choose
//! the slices to explain, explain them with every method, render and write the overlays.

use std::path::Path;
use std::time::Instant;

use ndarray::ArrayView3;

use super::Engine;
use crate::config::{Rule, SlicePolicy};
use crate::dicom::scan::Series;
use crate::dicom::secondary_capture::{self, Derivation, OverlayUids, Placement, Timestamp};
use crate::dicom::slices::{self, LoadedSlice};
use crate::explain::{self, Method, quality};
use crate::model::Classifier;
use crate::model::preprocess;
use crate::output::report::Probabilities;
use crate::output::{
    self, ExplanationReport, ModelReport, Quality, ReportError, SeriesPrediction, SeriesReport,
    SliceReport, SummaryReport,
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
        let mut failures = Vec::new();
        let slices = slices::load(series, &mut failures);
        errors.extend(failures.into_iter().map(ReportError::from));
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
        let mut methods = Vec::new();
        for method_name in self.engine.plan_methods(&self.rule.plan) {
            match explain::method_by_name(&method_name, &self.engine.methods) {
                Ok(method) => methods.push(method),
                Err(error) => errors.push(ReportError {
                    file: series.uid.clone(),
                    message: error.to_string(),
                }),
            }
        }
        let models = self.engine.plan_models(&self.rule.plan);
        for model in &models {
            model.plan_probes(methods.iter().flat_map(|m| m.probes().iter().copied()));
        }
        std::thread::scope(|scope| {
            // the derived models the methods read are built (or read from the cache) while
            // the slices are classified: ONNX Runtime optimises a graph on one core
            // (a panic there must not take the series down: the probe reports its own error)
            scope.spawn(|| {
                let prepare = || models.iter().for_each(|model| model.prepare_probes());
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(prepare)).is_err() {
                    tracing::warn!("preparing the gradient models panicked; methods build them");
                }
            });
            for (model_index, model) in models.iter().enumerate() {
                let mut model_report =
                    self.process_model(series, &slices, model, &methods, model_index, errors);
                record_providers(&mut model_report, model);
                report.models.push(model_report);
            }
        });
        report
    }

    fn process_model(
        &self,
        series: &Series,
        slices: &[LoadedSlice],
        model: &Classifier,
        methods: &[Box<dyn Method>],
        model_index: usize,
        errors: &mut Vec<ReportError>,
    ) -> ModelReport {
        let manifest = model.manifest();
        let mut report = ModelReport {
            model: manifest.name.clone(),
            version: manifest.version.clone(),
            trained: manifest.trained,
            provider: model.provider().to_string(),
            providers: Default::default(),
            warnings: Vec::new(),
            series_prediction: None,
            slices: Vec::new(),
            explanations: Vec::new(),
            summaries: Vec::new(),
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
            .map(|row| crate::model::classifier::argmax(row.iter().copied()))
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
        // every map first, so each can be compared with the other methods of its slice
        let mut computed: Vec<Computed> = Vec::new();
        let mut masks: std::collections::HashMap<usize, ndarray::Array2<bool>> =
            std::collections::HashMap::new();
        for method in methods {
            for &index in &chosen {
                let mask = masks
                    .entry(index)
                    .or_insert_with(|| crate::anatomy::brain_mask(slices[index].grey.view()));
                match self.compute(
                    &slices[index],
                    &inputs[index],
                    model,
                    method.as_ref(),
                    predicted[index],
                    mask,
                ) {
                    Ok(mut explanation) => {
                        explanation.index = index;
                        computed.push(explanation);
                    }
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
        self.compare_methods(&mut computed);
        if self.engine.settings.output.summary {
            for members in by_slice(&computed).values().filter(|m| m.len() >= 2) {
                let shown: Vec<&Computed> = members.iter().map(|&i| &computed[i]).collect();
                let index = shown[0].index;
                match self.deliver_summary(
                    &shown,
                    &slices[index],
                    model,
                    model_index,
                    probabilities[[index, predicted[index]]],
                    &style,
                    series,
                ) {
                    Ok(summary) => report.summaries.push(summary),
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
        for explanation in computed {
            let index = explanation.index;
            match self.deliver(
                explanation,
                &slices[index],
                model,
                model_index,
                probabilities[[index, predicted[index]]],
                &style,
                series,
            ) {
                Ok(delivered) => report.explanations.push(delivered),
                Err(message) => {
                    tracing::error!("{message}");
                    errors.push(ReportError {
                        file: slices[index].sop_instance_uid.clone(),
                        message,
                    });
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

    /// One method's map of one slice, brought to the slice, and its quality so far.
    fn compute(
        &self,
        slice: &LoadedSlice,
        input: &ndarray::Array3<f32>,
        model: &Classifier,
        method: &dyn Method,
        class: usize,
        mask: &ndarray::Array2<bool>,
    ) -> Result<Computed, String> {
        let started = Instant::now();
        let where_ = format!(
            "{} frame {} ({} {})",
            slice.sop_instance_uid,
            slice.frame,
            model.manifest().name,
            method.name()
        );
        let assessed = quality::explain_and_assess(
            model,
            method,
            input.view(),
            class,
            mask,
            &self.engine.quality_policy(),
        )
        .map_err(|e| format!("{where_}: {e}"))?;
        Ok(Computed {
            method: method.name(),
            index: 0,
            class,
            passes: assessed.passes(),
            quality: assessed.assessment.to_report(),
            map: assessed.map,
            heat: assessed.heat,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Agreement between the methods of each slice, and the `methods-disagree` flag.
    fn compare_methods(&self, computed: &mut [Computed]) {
        let threshold = self.engine.quality_policy().agreement_threshold;
        for members in by_slice(computed).values() {
            let maps: Vec<_> = members.iter().map(|&i| computed[i].heat.view()).collect();
            let agreement = quality::agreement(&maps);
            for (&i, value) in members.iter().zip(agreement) {
                computed[i].quality.agreement = value;
                if value.is_some_and(|a| a < threshold) {
                    computed[i]
                        .quality
                        .flags
                        .push(quality::METHODS_DISAGREE.to_string());
                }
            }
        }
    }

    /// Renders and writes one overlay; its entry of the report.
    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &self,
        computed: Computed,
        slice: &LoadedSlice,
        model: &Classifier,
        model_index: usize,
        probability: f32,
        style: &Style,
        series: &Series,
    ) -> Result<ExplanationReport, String> {
        let started = Instant::now();
        let manifest = model.manifest();
        let where_ = format!(
            "{} frame {} ({} {})",
            slice.sop_instance_uid, slice.frame, manifest.name, computed.method
        );
        let label = manifest.labels[computed.class].clone();
        let notes = computed.quality.legend_notes();
        let legend = Legend {
            model_name: manifest.name.clone(),
            model_version: manifest.version.clone(),
            trained: manifest.trained,
            method: computed.method.to_string(),
            class_label: label.clone(),
            probability,
            notes,
        };
        let image = render::render_overlay(
            slice.grey.view(),
            computed.heat.view(),
            style,
            &legend,
            &self.engine.font,
        )
        .map_err(|e| format!("{where_}: {e}"))?;
        let derivation = Derivation {
            model_name: manifest.name.clone(),
            model_version: manifest.version.clone(),
            model_sha256: Some(model.sha256().to_string()),
            trained: manifest.trained,
            method: computed.method.to_string(),
            parameters: computed.map.parameters.to_string(),
            target_layer: computed.map.target_layer.clone(),
            class_label: label.clone(),
            probability,
            colour_map: style.colour_map.name().to_string(),
            quality: Some(computed.quality.summary()).filter(|q| !q.is_empty()),
        };
        let method_index = crate::explain::METHOD_NAMES
            .iter()
            .position(|m| *m == computed.method)
            .unwrap_or(0);
        let (uids, relative) = self
            .write_overlay(
                &image,
                &derivation,
                slice,
                model_index,
                method_index,
                series,
            )
            .map_err(|e| format!("{where_}: {e}"))?;
        Ok(ExplanationReport {
            method: computed.method.to_string(),
            sop_instance_uid: slice.sop_instance_uid.clone(),
            frame: slice.frame,
            class: label,
            probability,
            output_sop_instance_uid: uids.instance,
            output_series_instance_uid: uids.series,
            output_file: relative,
            parameters: computed.map.parameters,
            model_passes: computed.passes,
            seconds: computed.seconds + started.elapsed().as_secs_f64(),
            quality: computed.quality,
        })
    }
}

impl SeriesContext<'_> {
    /// Renders and writes the summary image of one slice: the slice and the maps of
    /// `shown` (every method of the slice) side by side.
    #[allow(clippy::too_many_arguments)]
    fn deliver_summary(
        &self,
        shown: &[&Computed],
        slice: &LoadedSlice,
        model: &Classifier,
        model_index: usize,
        probability: f32,
        style: &Style,
        series: &Series,
    ) -> Result<SummaryReport, String> {
        let manifest = model.manifest();
        let where_ = format!(
            "{} frame {} ({} summary)",
            slice.sop_instance_uid, slice.frame, manifest.name
        );
        let label = manifest.labels[shown[0].class].clone();
        let methods: Vec<String> = shown.iter().map(|c| c.method.to_string()).collect();
        let (rows, columns) = slice.grey.dim();
        // the leading parts of a map (the sae method's concepts), each on the slice
        let parts: Vec<(String, String, ndarray::Array2<f32>)> = shown
            .iter()
            .flat_map(|c| {
                c.map
                    .parts
                    .iter()
                    .map(move |(name, part)| (c.method.to_string(), name.clone(), part))
            })
            .map(|(method, name, part)| {
                (method, name, explain::to_slice(part.view(), rows, columns))
            })
            .collect();
        let mut panels: Vec<render::Panel> = shown
            .iter()
            .map(|c| render::Panel {
                title: c.method.to_string(),
                caption: tile_caption(&c.quality),
                flagged: !c.quality.flags.is_empty(),
                heat: c.heat.view(),
            })
            .collect();
        for (method, name, heat) in &parts {
            let (title, caption) = match name.split_once(": ") {
                Some((title, caption)) => (format!("{method} {title}"), caption.to_string()),
                None => (format!("{method} {name}"), String::new()),
            };
            panels.push(render::Panel {
                title,
                // a concept that lives mostly outside the brain
                flagged: caption
                    .split("% inside")
                    .next()
                    .and_then(|head| head.rsplit(' ').next())
                    .and_then(|share| share.parse::<f32>().ok())
                    .is_some_and(|share| share < 100.0 * crate::sae::concepts::OUTSIDE_BRAIN),
                caption,
                heat: heat.view(),
            });
        }
        let flagged: Vec<&str> = shown
            .iter()
            .filter(|c| !c.quality.flags.is_empty())
            .map(|c| c.method)
            .collect();
        let mut notes = vec![format!(
            "each map scaled to its own maximum; methods: {}",
            methods.join(", ")
        )];
        if !flagged.is_empty() {
            notes.push(format!("flagged: {}", flagged.join(", ")));
        }
        let legend = Legend {
            model_name: manifest.name.clone(),
            model_version: manifest.version.clone(),
            trained: manifest.trained,
            method: SUMMARY.to_string(),
            class_label: label.clone(),
            probability,
            notes,
        };
        let image = render::render_summary(
            slice.grey.view(),
            &panels,
            style,
            &legend,
            &self.engine.font,
        )
        .map_err(|e| format!("{where_}: {e}"))?;
        let per_method: Vec<String> = shown
            .iter()
            .map(|c| format!("{}: {}", c.method, c.quality.summary()))
            .collect();
        let derivation = Derivation {
            model_name: manifest.name.clone(),
            model_version: manifest.version.clone(),
            model_sha256: Some(model.sha256().to_string()),
            trained: manifest.trained,
            method: SUMMARY.to_string(),
            // the summary shows every method's map: any method's parameters change it
            parameters: serde_json::Value::Array(
                shown.iter().map(|c| c.map.parameters.clone()).collect(),
            )
            .to_string(),
            target_layer: None,
            class_label: label.clone(),
            probability,
            colour_map: style.colour_map.name().to_string(),
            quality: Some(per_method.join(" | ")),
        };
        let (uids, relative) = self
            .write_overlay(
                &image,
                &derivation,
                slice,
                model_index,
                crate::explain::METHOD_NAMES.len(),
                series,
            )
            .map_err(|e| format!("{where_}: {e}"))?;
        Ok(SummaryReport {
            sop_instance_uid: slice.sop_instance_uid.clone(),
            frame: slice.frame,
            class: label,
            methods,
            output_sop_instance_uid: uids.instance,
            output_series_instance_uid: uids.series,
            output_file: relative,
        })
    }

    /// Builds the Secondary Capture of `image` and writes it atomically; its UIDs and its
    /// path relative to the study folder. `slot` is the method's index in
    /// [`crate::explain::METHOD_NAMES`], or its length for the summary series.
    fn write_overlay(
        &self,
        image: &secondary_capture::RgbImage,
        derivation: &Derivation,
        slice: &LoadedSlice,
        model_index: usize,
        slot: usize,
        series: &Series,
    ) -> Result<(OverlayUids, std::path::PathBuf), String> {
        let slots_per_model = crate::explain::METHOD_NAMES.len() + 1;
        let placement = Placement {
            source_frame: slice.frame,
            instance_number: slice.position,
            series_number: self.engine.settings.output.series_number_base
                + 1
                + (model_index * slots_per_model + slot) as u32,
        };
        let object = secondary_capture::build(
            slice.file.dataset(),
            image,
            derivation,
            placement,
            self.created,
        )
        .map_err(|e| e.to_string())?;
        let uids = OverlayUids::derive(
            &series.uid,
            &slice.sop_instance_uid,
            slice.frame,
            derivation,
        );
        let relative = output::overlay_relative_path(&uids.series, &uids.instance)
            .map_err(|e| e.to_string())?;
        secondary_capture::write_atomically(&object, &self.study_dir.join(&relative))
            .map_err(|e| e.to_string())?;
        Ok((uids, relative))
    }
}

/// Records the provider of every session `model` used, and warns when one of them fell back
/// to the CPU although the site asked for CUDA (a gradient model can fall back alone).
fn record_providers(report: &mut ModelReport, model: &Classifier) {
    report.providers = model.providers();
    if !model.cuda_requested() {
        return;
    }
    let on_cpu: Vec<&str> = report
        .providers
        .iter()
        .filter(|(_, provider)| provider.as_str() == "cpu")
        .map(|(session, _)| session.as_str())
        .collect();
    if !on_cpu.is_empty() {
        let warning = format!(
            "CUDA was asked for, but these sessions ran on the CPU: {}",
            on_cpu.join(", ")
        );
        tracing::warn!(model = %report.model, "{warning}");
        report.warnings.push(warning);
    }
}

/// The "method" of a summary image, in its UIDs, descriptions and legend.
pub const SUMMARY: &str = "summary";

/// A tile's caption: the in-brain share and the flags, short enough for a tile.
fn tile_caption(quality: &Quality) -> String {
    let mut parts = Vec::new();
    if let Some(f) = quality.in_brain_fraction {
        parts.push(format!("in brain {:.0}%", 100.0 * f));
    }
    if let (Some(d), Some(r)) = (quality.deletion_auc, quality.random_deletion_auc) {
        parts.push(format!("deletion AUC {d:.2} vs random {r:.2}"));
    }
    parts.extend(quality.flags.iter().cloned());
    parts.join(", ")
}

/// The computed maps grouped by slice: slice index -> indices into `computed`.
fn by_slice(computed: &[Computed]) -> std::collections::BTreeMap<usize, Vec<usize>> {
    let mut groups: std::collections::BTreeMap<usize, Vec<usize>> =
        std::collections::BTreeMap::new();
    for (i, c) in computed.iter().enumerate() {
        groups.entry(c.index).or_default().push(i);
    }
    groups
}

/// One method's map of one slice, before it is compared, rendered and written.
struct Computed {
    method: &'static str,
    /// The slice's index in the series' slices.
    index: usize,
    class: usize,
    passes: usize,
    map: explain::ModelMap,
    /// On the slice.
    heat: ndarray::Array2<f32>,
    quality: Quality,
    seconds: f64,
}
