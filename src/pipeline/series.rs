//! One series under one rule: classify every slice with every model of the plan, choose
//! the slices to explain, explain them with every method, render and write the overlays.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::{Array2, Array3, ArrayView3};
use snafu::{ResultExt, Snafu};

use super::{Engine, ResolvedPlan};
use crate::config::{OutputFormat, Rule, SlicePolicy};
use crate::dicom::parametric_map::{self, MapFrame};
use crate::dicom::scan::Series;
use crate::dicom::secondary_capture::{
    self, Derivation, OverlayUids, Placement, Timestamp, WriteError,
};
use crate::dicom::slices::{self, LoadedSlice};
use crate::dicom::uid::InvalidUid;
use crate::explain::quality::{self, SliceCheck};
use crate::explain::{self, ExplainError, Method};
use crate::model::Classifier;
use crate::model::preprocess;
use crate::output::report::Probabilities;
use crate::output::{
    self, ExplanationReport, MapFrameReport, ModelReport, ParametricMapReport, Quality,
    ReportError, SeriesPrediction, SeriesReport, SliceAt, SliceReport, SummaryReport,
};
use crate::render::{self, ColourMap, Legend, RenderError, Style};

/// Why one overlay or summary image of a slice could not be made. `at` names the slice,
/// the model and the method.
#[derive(Debug, Snafu)]
enum OutputError {
    #[snafu(display("{at}: {source}"))]
    Explain { at: String, source: ExplainError },
    #[snafu(display("{at}: {source}"))]
    Render { at: String, source: RenderError },
    #[snafu(display("{at}: {source}"))]
    Overlay { at: String, source: WriteError },
    #[snafu(display("{at}: {source}"))]
    OutputPath { at: String, source: InvalidUid },
}

/// What processing a series needs from its surroundings.
pub struct SeriesContext<'a> {
    /// The engine.
    pub engine: &'a Engine,
    /// The rule that selected the series.
    pub rule: &'a Rule,
    /// The rule's plan, resolved when the engine was built.
    pub plan: &'a ResolvedPlan,
    /// `<out>/<StudyInstanceUID>`.
    pub study_dir: &'a Path,
    /// When the outputs are created.
    pub created: &'a Timestamp,
    /// Seconds per stage of the study.
    pub times: &'a super::StageTimes,
}

/// One model's classification of a series: what its explanations, overlays and summary
/// images are made from.
struct ModelRun<'a> {
    series: &'a Series,
    slices: &'a [LoadedSlice],
    model: &'a Classifier,
    /// The model's place in the engine (its overlay series numbers).
    model_index: usize,
    /// `[slices, labels]`.
    probabilities: Array2<f32>,
    /// Each slice's predicted class.
    predicted: Vec<usize>,
    /// Where the brain is on each slice.
    anatomy: &'a SliceAnatomy,
    style: Style,
}

impl ModelRun<'_> {
    /// The probability of the predicted class of slice `index`.
    fn probability(&self, index: usize) -> f32 {
        self.probabilities[[index, self.predicted[index]]]
    }

    /// `SOPInstanceUID frame F (model what)`: where an error happened.
    fn at(&self, slice: &LoadedSlice, what: &str) -> String {
        format!(
            "{} frame {} ({} {what})",
            slice.sop_instance_uid,
            slice.frame,
            self.model.manifest().name
        )
    }
}

impl SeriesContext<'_> {
    /// Processes `series`; errors go to `errors` and into the model reports.
    pub fn process(&self, series: &Series, errors: &mut Vec<ReportError>) -> SeriesReport {
        let span = tracing::info_span!("series", uid = %series.uid, rule = %self.rule.name);
        let _entered = span.enter();
        let mut failures = Vec::new();
        let slices = self
            .times
            .time("decode", || slices::load(series, &mut failures));
        errors.extend(failures.into_iter().map(ReportError::from));
        let mut report = SeriesReport {
            series_instance_uid: series.uid.clone(),
            rule: self.rule.name.clone(),
            slice_count: series.slices.len(),
            sop_class_uid: series.header.sop_class_uid.clone(),
            models: Vec::new(),
        };
        if slices.is_empty() {
            errors.push(ReportError {
                file: series.uid.clone(),
                message: format!("series {}: no slice could be decoded", series.uid),
            });
            return report;
        }
        let min_fraction = self.engine.settings.prediction.min_brain_fraction;
        let anatomy = self.times.time("brain-mask", || {
            SliceAnatomy::measure(&slices, min_fraction)
        });
        let methods = &self.plan.methods;
        let models: Vec<(usize, &Classifier)> = self
            .plan
            .models
            .iter()
            .map(|&index| (index, &self.engine.models[index]))
            .collect();
        for (_, model) in &models {
            model.plan_probes(methods.iter().flat_map(|m| m.probes().iter().copied()));
        }
        std::thread::scope(|scope| {
            // the derived models the methods read are built (or read from the cache) while
            // the slices are classified: ONNX Runtime optimises a graph on one core
            // (a panic there must not take the series down: the probe reports its own error)
            scope.spawn(|| {
                let prepare = || models.iter().for_each(|(_, model)| model.prepare_probes());
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(prepare)).is_err() {
                    tracing::warn!("preparing the gradient models panicked; methods build them");
                }
            });
            for &(model_index, model) in &models {
                let mut model_report =
                    self.process_model(series, &slices, &anatomy, model, model_index, errors);
                record_providers(&mut model_report, model);
                report.models.push(model_report);
            }
        });
        report
    }

    /// One model on the series: classified, its chosen slices explained by every method of
    /// the plan, compared, rendered and written.
    fn process_model(
        &self,
        series: &Series,
        slices: &[LoadedSlice],
        anatomy: &SliceAnatomy,
        model: &Classifier,
        model_index: usize,
        errors: &mut Vec<ReportError>,
    ) -> ModelReport {
        let manifest = model.manifest();
        let mut report = ModelReport {
            model: manifest.name.clone(),
            version: manifest.version.clone(),
            trained: manifest.trained,
            sha256: model.sha256().to_string(),
            provider: model.provider().to_string(),
            providers: Default::default(),
            warnings: Vec::new(),
            series_prediction: None,
            slices: Vec::new(),
            explanations: Vec::new(),
            summaries: Vec::new(),
            parametric_maps: Vec::new(),
            error: None,
        };
        let started = Instant::now();
        let inputs: Vec<Array3<f32>> = slices
            .iter()
            .map(|s| preprocess::model_input(s.grey.view(), &manifest.input))
            .collect();
        let views: Vec<ArrayView3<f32>> = inputs.iter().map(|i| i.view()).collect();
        let predicted = self.times.time("classify", || {
            model.predict(preprocess::batch(&views).view())
        });
        let probabilities = match predicted {
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
        report.slices = slice_reports(slices, anatomy, labels, &probabilities, &predicted);
        report.series_prediction =
            Some(self.series_prediction(slices, anatomy, &probabilities, no_tumour, labels));
        let colour_map = match ColourMap::by_name(&self.rule.plan.colour_map) {
            Ok(map) => map,
            Err(error) => {
                report.error = Some(error.to_string());
                return report;
            }
        };
        let run = ModelRun {
            series,
            slices,
            model,
            model_index,
            probabilities,
            predicted,
            anatomy,
            style: Style {
                colour_map,
                opacity: self.rule.plan.opacity,
            },
        };
        // every map first, so each can be compared with the other methods of its slice
        let mut computed = self.explain_slices(&run, &inputs, no_tumour, errors);
        self.compare_methods(&mut computed);
        let formats = &self.engine.settings.output.formats;
        if formats.contains(&OutputFormat::Pmap) {
            for method in &self.plan.methods {
                // the method's maps, in the series' spatial order
                let mut members: Vec<&Computed> = computed
                    .iter()
                    .filter(|c| c.method == method.name())
                    .collect();
                members.sort_by_key(|c| c.index);
                let Some(first) = members.first() else {
                    continue;
                };
                match self
                    .times
                    .time("parametric-map", || self.deliver_map(&run, &members))
                {
                    Ok(map) => report.parametric_maps.push(map),
                    Err(error) => record(errors, &slices[first.index], &error),
                }
            }
        }
        if self.engine.settings.output.summary {
            for members in by_slice(&computed).values().filter(|m| m.len() >= 2) {
                let shown: Vec<&Computed> = members.iter().map(|&i| &computed[i]).collect();
                let slice = &slices[shown[0].index];
                match self
                    .times
                    .time("summary", || self.deliver_summary(&run, &shown))
                {
                    Ok(summary) => report.summaries.push(summary),
                    Err(error) => record(errors, slice, &error),
                }
            }
        }
        for explanation in computed {
            let slice = &slices[explanation.index];
            match self.deliver(&run, explanation) {
                Ok(delivered) => report.explanations.push(delivered),
                Err(error) => record(errors, slice, &error),
            }
        }
        report
    }

    /// Every method's map of the slices the plan chooses for it (one [`SliceCheck`] per
    /// slice: its brain mask and its maps' shared faithfulness curves).
    fn explain_slices(
        &self,
        run: &ModelRun<'_>,
        inputs: &[Array3<f32>],
        no_tumour: Option<usize>,
        errors: &mut Vec<ReportError>,
    ) -> Vec<Computed> {
        let mut computed = Vec::new();
        let mut checks: HashMap<usize, SliceCheck> = HashMap::new();
        let taking_part = run.anatomy.taking_part();
        for method in &self.plan.methods {
            let policy = self.rule.plan.slices_for(method.name());
            for index in chosen_slices(&run.probabilities, no_tumour, policy, &taking_part) {
                let slice = &run.slices[index];
                let check = checks
                    .entry(index)
                    .or_insert_with(|| SliceCheck::new(run.anatomy.masks[index].clone()));
                match self.compute(run, index, &inputs[index], method.as_ref(), check) {
                    Ok(explanation) => computed.push(explanation),
                    Err(error) => record(errors, slice, &error),
                }
            }
        }
        computed
    }

    /// The series' label from the slices that show a brain (every slice when none does).
    fn series_prediction(
        &self,
        slices: &[LoadedSlice],
        anatomy: &SliceAnatomy,
        probabilities: &Array2<f32>,
        no_tumour: Option<usize>,
        labels: &[String],
    ) -> SeriesPrediction {
        // (slice, class, probability) of the most probable tumour class on any slice
        let mut best: Option<(usize, usize, f32)> = None;
        let taking_part = anatomy.taking_part();
        for (index, row) in probabilities.outer_iter().enumerate() {
            if !taking_part[index] {
                continue;
            }
            for (class, p) in row.iter().enumerate() {
                if Some(class) != no_tumour && best.is_none_or(|(_, _, q)| *p > q) {
                    best = Some((index, class, *p));
                }
            }
        }
        let decided_by = best.map(|(index, _, _)| SliceAt {
            sop_instance_uid: slices[index].sop_instance_uid.clone(),
            frame: slices[index].frame,
        });
        let threshold = self.engine.settings.prediction.tumour_threshold;
        let (label, probability) = match (best, no_tumour) {
            (Some((_, class, p)), _) if p >= threshold => (class, p),
            (best, Some(none)) => (none, 1.0 - best.map_or(0.0, |(_, _, p)| p)),
            // a model without a "notumor" label: its most probable class anywhere
            (best, None) => best.map_or((0, 0.0), |(_, class, p)| (class, p)),
        };
        let mut flags = Vec::new();
        if !anatomy.any_brain() {
            flags.push(crate::anatomy::NO_BRAIN.to_string());
        }
        SeriesPrediction {
            label: labels[label].clone(),
            probability,
            decided_by,
            flags,
        }
    }

    /// One method's map of slice `index`, brought to the slice, and its quality so far.
    fn compute(
        &self,
        run: &ModelRun<'_>,
        index: usize,
        input: &Array3<f32>,
        method: &dyn Method,
        check: &mut SliceCheck,
    ) -> Result<Computed, OutputError> {
        let started = Instant::now();
        let class = run.predicted[index];
        let stage = format!("explain.{}", method.name());
        let assessed = self
            .times
            .time(&stage, || {
                quality::explain_and_assess(
                    run.model,
                    method,
                    input.view(),
                    class,
                    check,
                    &self.engine.quality_policy(),
                )
            })
            .context(ExplainSnafu {
                at: run.at(&run.slices[index], method.name()),
            })?;
        Ok(Computed {
            method: method.name(),
            index,
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
    fn deliver(
        &self,
        run: &ModelRun<'_>,
        computed: Computed,
    ) -> Result<ExplanationReport, OutputError> {
        let started = Instant::now();
        let manifest = run.model.manifest();
        let slice = &run.slices[computed.index];
        let probability = run.probability(computed.index);
        let at = run.at(slice, computed.method);
        let label = manifest.labels[computed.class].clone();
        let mut notes = computed.quality.legend_notes();
        if !run.anatomy.shows_brain(computed.index) {
            notes.insert(0, crate::anatomy::NO_BRAIN_WARNING.to_string());
        }
        let legend = Legend {
            model_name: manifest.name.clone(),
            model_version: manifest.version.clone(),
            trained: manifest.trained,
            method: computed.map.label(computed.method),
            class_label: label.clone(),
            probability,
            notes,
        };
        let image = self
            .times
            .time("render", || {
                render::render_overlay(
                    slice.grey.view(),
                    computed.heat.view(),
                    &run.style,
                    &legend,
                    &self.engine.font,
                )
            })
            .context(RenderSnafu { at: &at })?;
        let derivation = Derivation {
            model_name: manifest.name.clone(),
            model_version: manifest.version.clone(),
            model_sha256: Some(run.model.sha256().to_string()),
            trained: manifest.trained,
            method: computed.method.to_string(),
            parameters: computed.map.settings().to_string(),
            target_layer: computed.map.target_layer.clone(),
            class_label: label.clone(),
            probability,
            colour_map: run.style.colour_map.name().to_string(),
            quality: Some(computed.quality.summary()).filter(|q| !q.is_empty()),
        };
        let method_index = explain::METHOD_NAMES
            .iter()
            .position(|m| *m == computed.method)
            .unwrap_or(0);
        let (uids, relative) = self.times.time("write", || {
            self.write_overlay(run, &image, &derivation, slice, method_index, &at)
        })?;
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

    /// Renders and writes the summary image of one slice: the slice and the maps of
    /// `shown` (every method of the slice) side by side.
    fn deliver_summary(
        &self,
        run: &ModelRun<'_>,
        shown: &[&Computed],
    ) -> Result<SummaryReport, OutputError> {
        let manifest = run.model.manifest();
        let slice = &run.slices[shown[0].index];
        let probability = run.probability(shown[0].index);
        let at = run.at(slice, SUMMARY);
        let label = manifest.labels[shown[0].class].clone();
        let methods: Vec<String> = shown.iter().map(|c| c.method.to_string()).collect();
        let (rows, columns) = slice.grey.dim();
        // the leading parts of a map (the sae method's concepts), each on the slice
        let parts: Vec<(&str, &explain::MapPart, Array2<f32>)> = shown
            .iter()
            .flat_map(|c| c.map.parts.iter().map(move |part| (c.method, part)))
            .map(|(method, part)| {
                (
                    method,
                    part,
                    explain::to_slice(part.heat.view(), rows, columns),
                )
            })
            .collect();
        let mut panels: Vec<render::Panel> = shown
            .iter()
            .map(|c| render::Panel {
                title: c.map.label(c.method),
                caption: tile_caption(&c.quality),
                flagged: !c.quality.flags.is_empty(),
                heat: c.heat.view(),
            })
            .collect();
        for (method, part, heat) in &parts {
            let (title, caption) = match part.name.split_once(": ") {
                Some((title, caption)) => (format!("{method} {title}"), caption.to_string()),
                None => (format!("{method} {}", part.name), String::new()),
            };
            panels.push(render::Panel {
                title,
                caption,
                flagged: part.outside_brain,
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
            &run.style,
            &legend,
            &self.engine.font,
        )
        .context(RenderSnafu { at: &at })?;
        let per_method: Vec<String> = shown
            .iter()
            .map(|c| format!("{}: {}", c.method, c.quality.summary()))
            .collect();
        let derivation = Derivation {
            model_name: manifest.name.clone(),
            model_version: manifest.version.clone(),
            model_sha256: Some(run.model.sha256().to_string()),
            trained: manifest.trained,
            method: SUMMARY.to_string(),
            // one series per source series and model, whichever methods a slice has (with
            // `method_slices` some slices have fewer): the plan's methods and the site's
            // method parameters, any of which changes some summary
            parameters: format!(
                "{:?} {:?}",
                self.plan
                    .methods
                    .iter()
                    .map(|m| m.name())
                    .collect::<Vec<_>>(),
                self.engine.settings.methods
            ),
            target_layer: None,
            class_label: label.clone(),
            probability,
            colour_map: run.style.colour_map.name().to_string(),
            quality: Some(per_method.join(" | ")),
        };
        let summary_slot = explain::METHOD_NAMES.len();
        let (uids, relative) =
            self.write_overlay(run, &image, &derivation, slice, summary_slot, &at)?;
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

    /// Builds and writes the Parametric Map of one method's maps (`members`, in spatial
    /// order) over the series; its entry of the report. Its SeriesNumber follows every
    /// model's overlay series: base + 1 + models x overlay slots + the map's place (model,
    /// then the method's place in [`crate::explain::METHOD_NAMES`]).
    fn deliver_map(
        &self,
        run: &ModelRun<'_>,
        members: &[&Computed],
    ) -> Result<ParametricMapReport, OutputError> {
        let manifest = run.model.manifest();
        let first = members[0];
        let method_index = explain::METHOD_NAMES
            .iter()
            .position(|m| *m == first.method)
            .unwrap_or(0);
        let at = run.at(&run.slices[first.index], &format!("{} map", first.method));
        let derivation = super::map_derivation(run.model, first.method, &first.map);
        let frames: Vec<MapFrame<'_>> = members
            .iter()
            .map(|c| {
                let slice = &run.slices[c.index];
                MapFrame {
                    source: slice.file.dataset(),
                    source_frame: slice.frame,
                    class_label: &manifest.labels[c.class],
                    map: c.heat.view(),
                }
            })
            .collect();
        let overlay_slots = self.engine.models.len() * (explain::METHOD_NAMES.len() + 1);
        let series_number = self.engine.settings.output.series_number_base
            + 1
            + (overlay_slots + run.model_index * explain::METHOD_NAMES.len() + method_index) as u32;
        let (object, uids) =
            parametric_map::build(&frames, &derivation, series_number, self.created)
                .context(OverlaySnafu { at: &at })?;
        let relative = output::overlay_relative_path(&uids.series, &uids.instance)
            .context(OutputPathSnafu { at: &at })?;
        secondary_capture::write_atomically(&object, &self.study_dir.join(&relative))
            .context(OverlaySnafu { at: &at })?;
        Ok(ParametricMapReport {
            method: first.method.to_string(),
            frames: members
                .iter()
                .map(|c| {
                    let slice = &run.slices[c.index];
                    MapFrameReport {
                        sop_instance_uid: slice.sop_instance_uid.clone(),
                        frame: slice.frame,
                        class: manifest.labels[c.class].clone(),
                    }
                })
                .collect(),
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
        run: &ModelRun<'_>,
        image: &secondary_capture::RgbImage,
        derivation: &Derivation,
        slice: &LoadedSlice,
        slot: usize,
        at: &str,
    ) -> Result<(OverlayUids, PathBuf), OutputError> {
        let slots_per_model = explain::METHOD_NAMES.len() + 1;
        let placement = Placement {
            source_frame: slice.frame,
            instance_number: slice.position,
            series_number: self.engine.settings.output.series_number_base
                + 1
                + (run.model_index * slots_per_model + slot) as u32,
        };
        let object = secondary_capture::build(
            slice.file.dataset(),
            image,
            derivation,
            placement,
            self.created,
        )
        .context(OverlaySnafu { at })?;
        let uids = OverlayUids::derive(
            &run.series.uid,
            &slice.sop_instance_uid,
            slice.frame,
            derivation,
        );
        let relative = output::overlay_relative_path(&uids.series, &uids.instance)
            .context(OutputPathSnafu { at })?;
        secondary_capture::write_atomically(&object, &self.study_dir.join(&relative))
            .context(OverlaySnafu { at })?;
        Ok((uids, relative))
    }
}

/// An output of `slice` that could not be made: logged, and an error of the study.
fn record(errors: &mut Vec<ReportError>, slice: &LoadedSlice, error: &OutputError) {
    tracing::error!("{error}");
    errors.push(ReportError {
        file: slice.sop_instance_uid.clone(),
        message: error.to_string(),
    });
}

/// Each slice's prediction, in spatial order.
fn slice_reports(
    slices: &[LoadedSlice],
    anatomy: &SliceAnatomy,
    labels: &[String],
    probabilities: &Array2<f32>,
    predicted: &[usize],
) -> Vec<SliceReport> {
    slices
        .iter()
        .enumerate()
        .zip(probabilities.outer_iter().zip(predicted))
        .map(|((index, slice), (row, class))| SliceReport {
            sop_instance_uid: slice.sop_instance_uid.clone(),
            frame: slice.frame,
            label: labels[*class].clone(),
            probabilities: Probabilities(labels.iter().cloned().zip(row.iter().copied()).collect()),
            rows: slice.grey.nrows() as u32,
            columns: slice.grey.ncols() as u32,
            brain_fraction: Some(anatomy.fractions[index]),
            flags: anatomy.flags(index),
        })
        .collect()
}

/// Where the brain is on each slice of a series: measured once, read by every model.
struct SliceAnatomy {
    /// Each slice's brain mask ([`crate::anatomy::brain_mask`]).
    masks: Vec<Array2<bool>>,
    /// The share of each slice's area that its mask covers.
    fractions: Vec<f32>,
    /// `prediction.min_brain_fraction`.
    min_fraction: f32,
}

impl SliceAnatomy {
    fn measure(slices: &[LoadedSlice], min_fraction: f32) -> Self {
        let masks: Vec<Array2<bool>> = slices
            .iter()
            .map(|slice| crate::anatomy::brain_mask(slice.grey.view()))
            .collect();
        let fractions = masks.iter().map(crate::anatomy::brain_fraction).collect();
        Self {
            masks,
            fractions,
            min_fraction,
        }
    }

    fn shows_brain(&self, index: usize) -> bool {
        crate::anatomy::shows_brain(self.fractions[index], self.min_fraction)
    }

    fn any_brain(&self) -> bool {
        (0..self.fractions.len()).any(|index| self.shows_brain(index))
    }

    /// Which slices decide the series and may be chosen for explanation: those that show a
    /// brain, or every slice when none does (the prediction is then flagged `no-brain`).
    fn taking_part(&self) -> Vec<bool> {
        let any = self.any_brain();
        (0..self.fractions.len())
            .map(|index| !any || self.shows_brain(index))
            .collect()
    }

    /// The slice's flags: `no-brain` when too little of it is brain.
    fn flags(&self, index: usize) -> Vec<String> {
        crate::anatomy::slice_flags(self.fractions[index], self.min_fraction)
    }
}

/// The slices to explain under `policy`: the most tumour-like first (a slice's highest
/// probability of a tumour class), ties in spatial order. `All` takes every slice (a
/// Parametric Map needs a frame per slice); the others only slices `taking_part`.
fn chosen_slices(
    probabilities: &Array2<f32>,
    no_tumour: Option<usize>,
    policy: SlicePolicy,
    taking_part: &[bool],
) -> Vec<usize> {
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
    let mut order: Vec<usize> = (0..tumour_score.len())
        .filter(|&index| taking_part[index])
        .collect();
    order.sort_by(|a, b| tumour_score[*b].total_cmp(&tumour_score[*a]).then(a.cmp(b)));
    match policy {
        SlicePolicy::All => (0..tumour_score.len()).collect(),
        SlicePolicy::TopK(k) => order.into_iter().take(k.max(1)).collect(),
        SlicePolicy::None => order.into_iter().take(1).collect(),
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
fn by_slice(computed: &[Computed]) -> BTreeMap<usize, Vec<usize>> {
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
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
    heat: Array2<f32>,
    quality: Quality,
    seconds: f64,
}
