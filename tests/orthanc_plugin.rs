//! The Orthanc plugin in a real Orthanc (Debian's `/usr/sbin/Orthanc`, with its web viewer
//! and DICOMweb plugins): generated MR studies are uploaded through the REST API, and once
//! Orthanc calls them stable the plugin must have stored valid overlay series into them,
//! left every original instance byte-identical, kept Orthanc answering meanwhile, processed
//! late and changed series alone (removing the overlays a rerun made outdated), never looped
//! on its own overlays, shown up in Orthanc's web viewer (a headless Chromium looks) and
//! through DICOMweb (QIDO-RS, WADO-RS), and stopped cleanly, abandoning the study in hand
//! after `StopTimeout`. A broken configuration must leave Orthanc running.
//!
//! `DICOM_XAI_UPDATE_DOCS=1` also copies the browser's screenshots to `docs/`.

mod common;
#[path = "support/orthanc.rs"]
mod orthanc;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use orthanc::Orthanc;
use serde_json::{Value, json};

/// Orthanc's StableAge in these tests, seconds.
const STABLE_AGE: u32 = 2;
/// The mark of our overlay series.
const MARKER: &str = "NOT FOR DIAGNOSTIC USE";

/// The tests that run the pipeline take turns: two cores, and a timing is measured.
static PIPELINE: Mutex<()> = Mutex::new(());

fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    PIPELINE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The ONNX Runtime library of the project's `.venv` (Orthanc's executable is elsewhere, so
/// the site configuration names it).
fn onnxruntime() -> PathBuf {
    dicom_xai::runtime::library_candidates(None)
        .into_iter()
        .find(|p| p.is_file())
        .expect("libonnxruntime.so.1.* not found: run `make setup`")
}

/// A site configuration: the real VGG16, Grad-CAM on the `top_k` most tumour-like slices.
fn site_config(dir: &Path, top_k: usize) -> PathBuf {
    let manifest = common::root().join("onnx/manifests/vgg16-kaggle.toml");
    let explain = format!("methods = [\"gradcam\"]\nslices = \"top-k\"\ntop_k = {top_k}");
    write_site_config(dir, &manifest, &explain, r#"["sc"]"#)
}

/// Writes `dir/site.toml`: the model of `manifest`, `[explain]` and `[output] formats` as
/// given, every MR series.
fn write_site_config(dir: &Path, manifest: &Path, explain: &str, formats: &str) -> PathBuf {
    let text = format!(
        r#"
[runtime]
onnxruntime = "{ort}"
intra_threads = 2
batch_size = 8

[[models]]
manifest = "{manifest}"

[output]
dir = "{unused}"
formats = {formats}

[quality]
faithfulness_steps = 0

[explain]
{explain}

[[rules]]
name = "brain-mr"
[rules.select]
modality = ["MR"]
"#,
        ort = onnxruntime().display(),
        manifest = manifest.display(),
        unused = dir.join("unused").display(),
    );
    let path = dir.join("site.toml");
    std::fs::write(&path, text).expect("site configuration");
    path
}

/// Orthanc with the plugin (and the web viewer and DICOMweb plugins when asked),
/// processing with `site`.
fn start_orthanc(site: &Path, out: &Path, viewers: bool, stop_timeout: f64) -> Orthanc {
    let plugin = orthanc::plugin_library();
    let mut plugins = vec![plugin.as_path()];
    if viewers {
        for (library, package) in [
            (orthanc::WEB_VIEWER, "orthanc-webviewer"),
            (orthanc::DICOMWEB, "orthanc-dicomweb"),
        ] {
            assert!(
                Path::new(library).exists(),
                "{library} is missing: run `make setup` (Debian package {package})"
            );
            plugins.insert(0, Path::new(library));
        }
    }
    Orthanc::start(
        &plugins,
        STABLE_AGE,
        json!({ "DicomXai": {
            "Enable": true,
            "Config": site,
            "Out": out,
            "StopTimeout": stop_timeout,
        }}),
    )
}

/// Polls `f` every 100 ms until it gives a value; panics with `what` and Orthanc's log
/// after `limit`.
fn wait_for<T>(
    orthanc: &Orthanc,
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(
            started.elapsed() < limit,
            "{what}: not within {limit:?}\nstatus: {}\nlog tail:\n{}",
            orthanc.json("/dicom-xai/status"),
            tail(&orthanc.log(), 60)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The plugin's job for an Orthanc study.
fn job(orthanc: &Orthanc, study: &str) -> Option<Value> {
    orthanc.json("/dicom-xai/status")["jobs"]
        .as_array()?
        .iter()
        .find(|j| j["study"] == study)
        .cloned()
}

/// The series of a study, as Orthanc lists them.
fn series_of(orthanc: &Orthanc, study: &str) -> Vec<Value> {
    orthanc
        .json(&format!("/studies/{study}/series"))
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// One of our output series: overlays, summaries and maps (OT) or the Structured Report (SR).
fn is_overlay(series: &Value) -> bool {
    ["OT", "SR"].contains(&series["MainDicomTags"]["Modality"].as_str().unwrap_or(""))
        && series["MainDicomTags"]["SeriesDescription"]
            .as_str()
            .is_some_and(|d| d.contains(MARKER))
}

/// Overlay series ID -> its instance IDs (sorted).
fn overlays(orthanc: &Orthanc, study: &str) -> BTreeMap<String, Vec<String>> {
    series_of(orthanc, study)
        .iter()
        .filter(|s| is_overlay(s))
        .map(|s| {
            let mut instances: Vec<String> = s["Instances"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect();
            instances.sort();
            (s["ID"].as_str().expect("ID").to_string(), instances)
        })
        .collect()
}

/// Uploads files; instance ID -> the bytes uploaded. Returns the study's Orthanc ID too.
fn upload(orthanc: &Orthanc, files: &[PathBuf]) -> (String, BTreeMap<String, Vec<u8>>) {
    let mut study = String::new();
    let mut uploaded = BTreeMap::new();
    for file in files {
        let answer = orthanc.store(file);
        assert_eq!(answer["Status"], "Success", "{}: {answer}", file.display());
        study = answer["ParentStudy"]
            .as_str()
            .expect("ParentStudy")
            .to_string();
        let id = answer["ID"].as_str().expect("ID").to_string();
        uploaded.insert(id, std::fs::read(file).expect("readable"));
    }
    (study, uploaded)
}

/// No panic was caught at the plugin's boundaries.
fn assert_no_internal_error(log: &str) {
    assert!(
        !log.contains("dicom-xai: internal error") && !log.contains("with an internal error"),
        "{}",
        tail(log, 60)
    );
}

/// Red pixels of the burned-in NOT FOR DIAGNOSTIC USE band in a screenshot.
fn banner_pixels(png: &Path) -> usize {
    let image = image::open(png).expect("a PNG screenshot").to_rgb8();
    image
        .pixels()
        .filter(|p| p[0] > 150 && p[1] < 70 && p[2] < 80)
        .count()
}

#[test]
fn stable_studies_get_valid_overlays_in_orthanc_its_web_viewer_and_dicomweb() {
    let _turn = take_turn();
    let work = tempfile::tempdir().expect("temporary folder");
    let site = site_config(work.path(), 3);
    let out = work.path().join("out");
    let generated = common::generate_study_seeded("demo", 41);
    let files = generated.dicom_files();
    assert_eq!(files.len(), 24, "the demo study has 24 slices");
    let study_uid = generated.manifest["studies"][0]["study_instance_uid"]
        .as_str()
        .expect("StudyInstanceUID")
        .to_string();
    let orthanc = start_orthanc(&site, &out, true, 10.0);
    assert_eq!(orthanc.json("/dicom-xai/status")["enabled"], true);

    // upload, then wait for Orthanc's stable event and the plugin
    let started = Instant::now();
    let (study, uploaded) = upload(&orthanc, &files);
    let upload_seconds = started.elapsed().as_secs_f64();

    // Orthanc answers while the study is processed
    wait_for(&orthanc, "the job running", Duration::from_secs(60), || {
        job(&orthanc, &study).filter(|j| j["state"] == "running")
    });
    let asked = Instant::now();
    let system = orthanc.request("GET", "/system", &[]);
    let answered = asked.elapsed();
    assert_eq!(system.status, 200);
    let series = orthanc.request("GET", &format!("/studies/{study}/series"), &[]);
    assert_eq!(series.status, 200);
    assert_eq!(
        job(&orthanc, &study).expect("job")["state"],
        "running",
        "the REST calls must have been answered while the study was processed"
    );
    assert!(
        answered < Duration::from_secs(2),
        "GET /system took {answered:?} during processing"
    );

    let overlay_series = wait_for(
        &orthanc,
        "3 overlays in Orthanc",
        Duration::from_secs(120),
        || {
            let found = overlays(&orthanc, &study);
            (found.values().map(Vec::len).sum::<usize>() == 3).then_some(found)
        },
    );
    let upload_to_overlays = started.elapsed().as_secs_f64();
    let done = wait_for(&orthanc, "the job done", Duration::from_secs(30), || {
        job(&orthanc, &study).filter(|j| j["state"] == "done")
    });
    eprintln!(
        "24-slice study, upload to overlays in Orthanc: {upload_to_overlays:.1} s (upload \
         {upload_seconds:.1} s, StableAge {STABLE_AGE} s, processing and storing {:.1} s)",
        done["seconds"].as_f64().unwrap_or(f64::NAN)
    );
    assert_eq!(done["overlays_stored"], 3);
    assert_eq!(done["series_processed"], 1);
    assert_eq!(done["study_instance_uid"], study_uid.as_str());
    assert_eq!(done["report_status"], "ok");

    // one overlay series of 3 Secondary Captures, the ones the report names
    assert_eq!(overlay_series.len(), 1, "{overlay_series:?}");
    let (overlay_id, overlay_instances) = overlay_series
        .iter()
        .next()
        .map(|(id, instances)| (id.clone(), instances.clone()))
        .expect("one");
    let report = orthanc.json(&format!("/dicom-xai/studies/{study}/report"));
    assert_eq!(report["study_instance_uid"], study_uid.as_str());
    assert_eq!(report["status"], "ok");
    let explained = common::explanations(&report);
    assert_eq!(explained.len(), 3);
    let reported: BTreeSet<String> = explained
        .iter()
        .filter_map(|e| e["output_sop_instance_uid"].as_str().map(str::to_string))
        .collect();
    let on_disk = out.join(&study_uid).join("report.json");
    assert!(on_disk.exists(), "{} is missing", on_disk.display());
    let download = tempfile::tempdir().expect("temporary folder");
    let mut stored_uids = BTreeSet::new();
    for instance in &overlay_instances {
        let tags = orthanc.json(&format!("/instances/{instance}/simplified-tags"));
        assert_eq!(
            tags["SOPClassUID"], "1.2.840.10008.5.1.4.1.1.7",
            "Secondary Capture"
        );
        assert_eq!(tags["StudyInstanceUID"], study_uid.as_str());
        assert_eq!(tags["Modality"], "OT");
        assert_eq!(tags["BurnedInAnnotation"], "YES");
        stored_uids.insert(tags["SOPInstanceUID"].as_str().expect("UID").to_string());
        let file = download.path().join(format!("{instance}.dcm"));
        std::fs::write(&file, orthanc.bytes(&format!("/instances/{instance}/file")))
            .expect("written");
        common::assert_no_dciodvfy_errors(&file);
    }
    assert_eq!(
        stored_uids, reported,
        "Orthanc holds the overlays the report names"
    );

    // nothing else in the study changed
    let originals: BTreeMap<String, Vec<u8>> = series_of(&orthanc, &study)
        .iter()
        .filter(|s| !is_overlay(s))
        .flat_map(|s| s["Instances"].as_array().cloned().unwrap_or_default())
        .filter_map(|i| i.as_str().map(str::to_string))
        .map(|id| {
            let bytes = orthanc.bytes(&format!("/instances/{id}/file"));
            (id, bytes)
        })
        .collect();
    assert_eq!(
        originals.keys().collect::<Vec<_>>(),
        uploaded.keys().collect::<Vec<_>>(),
        "the same original instances"
    );
    for (id, bytes) in &originals {
        assert!(bytes == &uploaded[id], "instance {id} changed in Orthanc");
    }
    assert_eq!(
        series_of(&orthanc, &study).len(),
        2,
        "the source series and ours"
    );

    // storing the overlays made the study stable again: one quiet run, then nothing more
    wait_for(
        &orthanc,
        "the rerun after our overlays",
        Duration::from_secs(30),
        || job(&orthanc, &study).filter(|j| j["runs"] == 2 && j["state"] == "done"),
    );
    std::thread::sleep(Duration::from_secs(u64::from(STABLE_AGE) * 2 + 1));
    let quiet = job(&orthanc, &study).expect("job");
    assert_eq!(quiet["runs"], 2, "no loop on our own overlays: {quiet}");
    assert_eq!(quiet["overlays_stored"], 3, "{quiet}");
    assert!(
        quiet["detail"]
            .as_str()
            .is_some_and(|d| d.contains("nothing new")),
        "{quiet}"
    );
    assert_eq!(overlays(&orthanc, &study), overlay_series);

    // a real browser: Orthanc's web viewer on the overlay series, and Orthanc Explorer
    let shots = tempfile::tempdir().expect("temporary folder");
    let viewer_png = shots.path().join("orthanc-webviewer.png");
    let viewer_dom = orthanc::chromium(
        &orthanc.url(&format!("/web-viewer/app/viewer.html?series={overlay_id}")),
        15_000,
        &viewer_png,
    );
    let description = series_of(&orthanc, &study)
        .iter()
        .find(|s| is_overlay(s))
        .and_then(|s| {
            s["MainDicomTags"]["SeriesDescription"]
                .as_str()
                .map(str::to_string)
        })
        .expect("description");
    assert!(
        viewer_dom.contains(&description) && viewer_dom.contains("<canvas"),
        "the web viewer did not load the overlay series:\n{viewer_dom}"
    );
    let red = banner_pixels(&viewer_png);
    assert!(
        red > 5_000,
        "the viewer's screenshot shows no NOT FOR DIAGNOSTIC USE band ({red} red pixels)"
    );
    let explorer_png = shots.path().join("orthanc-explorer.png");
    let explorer_dom = orthanc::chromium(
        &orthanc.url(&format!("/app/explorer.html#study?uuid={study}")),
        10_000,
        &explorer_png,
    );
    assert!(
        explorer_dom.contains(&description),
        "Orthanc Explorer does not list the overlay series"
    );
    // what OHIF or Weasis see through DICOMweb: the series (QIDO-RS) and its pictures
    // (WADO-RS rendered)
    let qido = orthanc.json(&format!("/dicom-web/studies/{study_uid}/series"));
    let listed = qido
        .as_array()
        .expect("QIDO-RS series")
        .iter()
        .find(|s| s["00080060"]["Value"][0] == "OT")
        .unwrap_or_else(|| panic!("QIDO-RS does not list the overlay series: {qido}"));
    assert_eq!(listed["0008103E"]["Value"][0], description.as_str());
    assert_eq!(
        listed["00201209"]["Value"][0], 3,
        "NumberOfSeriesRelatedInstances"
    );
    let overlay_uid = listed["0020000E"]["Value"][0]
        .as_str()
        .expect("SeriesInstanceUID");
    let sop = stored_uids.iter().next().expect("an overlay");
    let rendered = orthanc.request(
        "GET",
        &format!("/dicom-web/studies/{study_uid}/series/{overlay_uid}/instances/{sop}/rendered"),
        &[],
    );
    assert_eq!(rendered.status, 200);
    assert!(
        rendered.body.starts_with(&[0xff, 0xd8]),
        "WADO-RS rendered is not a JPEG"
    );

    if std::env::var_os("DICOM_XAI_UPDATE_DOCS").is_some() {
        let docs = common::root().join("docs");
        std::fs::copy(&viewer_png, docs.join("orthanc-webviewer.png")).expect("docs");
        std::fs::copy(&explorer_png, docs.join("orthanc-explorer.png")).expect("docs");
    }

    // a clean stop
    let (status, took, log) = orthanc.stop(Duration::from_secs(60));
    assert!(
        status.success(),
        "Orthanc exited with {status}:\n{}",
        tail(&log, 40)
    );
    assert!(
        log.contains("dicom-xai: stopped: worker and engine threads joined"),
        "{}",
        tail(&log, 40)
    );
    assert_no_internal_error(&log);
    eprintln!("Orthanc stopped in {took:?}");
}

/// The overlay series whose description names a source series: series UID of the source
/// (from the SC's ReferencedSeriesSequence) -> (overlay series ID, SOPInstanceUIDs).
/// `None` while the plugin is replacing overlays: an instance listed a moment ago may be
/// deleted before its tags are read.
fn overlays_by_source(
    orthanc: &Orthanc,
    study: &str,
) -> Option<BTreeMap<String, (String, BTreeSet<String>)>> {
    let mut found = BTreeMap::new();
    for (series, instances) in overlays(orthanc, study) {
        let mut uids = BTreeSet::new();
        let mut source = String::new();
        for instance in &instances {
            let path = format!("/instances/{instance}/tags?simplify");
            let answer = orthanc.request("GET", &path, &[]);
            if answer.status == 404 {
                return None;
            }
            assert_eq!(answer.status, 200, "GET {path}");
            let tags = answer.json();
            source = tags["ReferencedSeriesSequence"][0]["SeriesInstanceUID"]
                .as_str()
                .expect("ReferencedSeriesSequence")
                .to_string();
            uids.insert(tags["SOPInstanceUID"].as_str().expect("UID").to_string());
        }
        found.insert(source, (series, uids));
    }
    Some(found)
}

#[test]
fn late_and_changed_series_are_processed_alone_and_outdated_overlays_go() {
    let _turn = take_turn();
    let work = tempfile::tempdir().expect("temporary folder");
    let site = site_config(work.path(), 1);
    let out = work.path().join("out");
    let generated = common::generate_study_seeded("ordering", 42);
    let series: Vec<(String, Vec<PathBuf>)> = generated.manifest["studies"][0]["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|s| {
            let uid = s["series_instance_uid"].as_str().expect("UID").to_string();
            let files = s["files"]
                .as_array()
                .expect("files")
                .iter()
                .map(|f| generated.root.join(f.as_str().expect("path")))
                .collect();
            (uid, files)
        })
        .collect();
    assert_eq!(series.len(), 3);
    let (a, b, c) = (&series[0], &series[1], &series[2]);
    let orthanc = start_orthanc(&site, &out, false, 10.0);

    // first: half of series A and all of B
    let half = a.1.len() / 2;
    let first: Vec<PathBuf> = a.1[..half].iter().chain(&b.1).cloned().collect();
    let (study, _) = upload(&orthanc, &first);
    let before = wait_for(
        &orthanc,
        "two overlay series",
        Duration::from_secs(120),
        || {
            let done = job(&orthanc, &study).is_some_and(|j| j["state"] == "done");
            let found = overlays_by_source(&orthanc, &study)?;
            (found.len() == 2 && done).then_some(found)
        },
    );
    assert_eq!(job(&orthanc, &study).expect("job")["series_processed"], 2);

    // then the rest of A (a changed series) and C (a late one): only those two run
    let runs_before = job(&orthanc, &study).expect("job")["runs"]
        .as_u64()
        .unwrap_or(0);
    let rest: Vec<PathBuf> = a.1[half..].iter().chain(&c.1).cloned().collect();
    upload(&orthanc, &rest);
    let after = wait_for(
        &orthanc,
        "a third overlay series",
        Duration::from_secs(120),
        || {
            let done = job(&orthanc, &study).is_some_and(|j| {
                j["state"] == "done"
                    && j["series_processed"] == 2
                    && j["runs"].as_u64().unwrap_or(0) > runs_before
            });
            let found = overlays_by_source(&orthanc, &study)?;
            (found.len() == 3 && done).then_some(found)
        },
    );
    let rerun = job(&orthanc, &study).expect("job");
    assert!(rerun["runs"].as_u64().unwrap_or(0) > runs_before, "{rerun}");
    assert_eq!(
        after[&b.0], before[&b.0],
        "series B was not redone: its overlay stays"
    );

    // every overlay series holds exactly what the merged report names
    let report = orthanc.json(&format!("/dicom-xai/studies/{study}/report"));
    assert_eq!(report["status"], "ok");
    for (uid, _) in &series {
        let reported = report["series"]
            .as_array()
            .expect("series")
            .iter()
            .find(|s| s["series_instance_uid"] == uid.as_str())
            .unwrap_or_else(|| panic!("the report lacks series {uid}: {report}"));
        let named: BTreeSet<String> = common::explanations(&json!({ "series": [reported] }))
            .iter()
            .filter_map(|e| e["output_sop_instance_uid"].as_str().map(str::to_string))
            .collect();
        assert_eq!(
            after[uid].1, named,
            "series {uid}: Orthanc holds what the report names"
        );
    }
    assert_eq!(
        report["series"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["series_instance_uid"] == a.0.as_str())
            .map(|s| s["slice_count"].clone()),
        Some(json!(a.1.len())),
        "series A was redone whole"
    );
    // the slice explained in A changed with its new half: the old overlay went
    let outdated: BTreeSet<&String> = before[&a.0].1.difference(&after[&a.0].1).collect();
    assert_eq!(rerun["overlays_removed"], json!(outdated.len()), "{rerun}");
    eprintln!("outdated overlays removed on the rerun: {}", outdated.len());

    // studies whose StudyInstanceUID is not a UID: those Orthanc takes fail alone, naming
    // the attribute, and nothing is written for them
    let hostile = common::write_hostile_uid_files(&work.path().join("hostile"));
    let mut taken = Vec::new();
    for file in &hostile {
        if let Ok(answer) = orthanc.try_store(file) {
            let study = answer["ParentStudy"].as_str().expect("ParentStudy");
            taken.push(study.to_string());
        }
    }
    eprintln!(
        "Orthanc took {} of the {} files with hostile UIDs",
        taken.len(),
        hostile.len()
    );
    assert!(
        taken.len() >= 2,
        "Orthanc takes at least the path-like UIDs: {taken:?}"
    );
    for hostile_study in &taken {
        let failed = wait_for(
            &orthanc,
            "the hostile study to fail",
            Duration::from_secs(60),
            || job(&orthanc, hostile_study).filter(|j| j["state"] == "failed"),
        );
        assert!(
            failed.to_string().contains("StudyInstanceUID"),
            "the failure names the attribute: {failed}"
        );
    }

    let (status, _, log) = orthanc.stop(Duration::from_secs(60));
    assert!(status.success(), "{}", tail(&log, 40));
    assert_no_internal_error(&log);
    common::assert_nothing_written_outside(
        work.path(),
        &[
            &out,
            &site,
            &work.path().join("hostile"),
            &work.path().join("unused"),
        ],
    );
}

#[test]
fn stopping_orthanc_abandons_the_study_in_hand_after_stop_timeout() {
    let _turn = take_turn();
    let work = tempfile::tempdir().expect("temporary folder");
    // many slices explained: the study is still in hand when Orthanc is told to stop
    let site = site_config(work.path(), 24);
    let out = work.path().join("out");
    let generated = common::generate_study_seeded("demo", 43);
    let orthanc = start_orthanc(&site, &out, false, 1.0);
    let (study, _) = upload(&orthanc, &generated.dicom_files());
    wait_for(&orthanc, "the job running", Duration::from_secs(60), || {
        job(&orthanc, &study).filter(|j| j["state"] == "running")
    });
    std::thread::sleep(Duration::from_millis(500));
    let (status, took, log) = orthanc.stop(Duration::from_secs(60));
    assert!(
        status.success(),
        "Orthanc exited with {status}:\n{}",
        tail(&log, 40)
    );
    assert!(log.contains("abandoned"), "{}", tail(&log, 40));
    assert!(log.contains("dicom-xai: stopped"), "{}", tail(&log, 40));
    assert_no_internal_error(&log);
    // StopTimeout 1 s, then Orthanc's own shutdown (a few seconds)
    assert!(took < Duration::from_secs(20), "stopping took {took:?}");
}

#[test]
fn a_broken_configuration_leaves_orthanc_running() {
    let work = tempfile::tempdir().expect("temporary folder");
    let missing = work.path().join("no-such-site.toml");
    let plugin = orthanc::plugin_library();
    for (section, expected) in [
        (
            json!({ "Enable": true, "Config": missing }),
            missing.display().to_string(),
        ),
        (
            json!({ "Enable": true, "Config": missing, "Model": ["x"] }),
            "unknown field `Model`".to_string(),
        ),
    ] {
        let orthanc = Orthanc::start(
            &[plugin.as_path()],
            STABLE_AGE,
            json!({ "DicomXai": section }),
        );
        let status = orthanc.json("/dicom-xai/status");
        assert_eq!(status["enabled"], false, "{status}");
        assert!(
            status["problem"]
                .as_str()
                .is_some_and(|p| p.contains(&expected)),
            "the status names the problem ({expected}): {status}"
        );
        assert!(
            orthanc.log().contains(&expected),
            "the log names the problem"
        );
        assert_eq!(orthanc.request("GET", "/system", &[]).status, 200);
        let queued = orthanc.request(
            "POST",
            "/dicom-xai/studies/00000000-00000000-00000000-00000000-00000000/process",
            &[],
        );
        assert_eq!(queued.status, 503);
        let (exit, _, log) = orthanc.stop(Duration::from_secs(30));
        assert!(exit.success(), "{}", tail(&log, 40));
    }
}

/// The SOPInstanceUIDs of our outputs in a study, as Orthanc holds them.
fn overlay_sop_uids(orthanc: &Orthanc, study: &str) -> BTreeSet<String> {
    overlays(orthanc, study)
        .into_values()
        .flatten()
        .filter_map(|id| {
            orthanc.json(&format!("/instances/{id}"))["MainDicomTags"]["SOPInstanceUID"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

#[test]
fn a_new_model_or_changed_parameters_replace_the_outputs_in_orthanc() {
    let _turn = take_turn();
    let work = tempfile::tempdir().expect("temporary folder");
    let model = work.path().join("model");
    common::run_support_script("make_toy_model.py", &[model.as_os_str()]);
    let manifest = model.join("toy.toml");
    let configure = |patch: u32| {
        let explain = format!(
            "methods = [\"occlusion\"]\nslices = \"top-k\"\ntop_k = 1\n\n\
             [methods.occlusion]\npatch = {patch}\nstride = {patch}\nbaseline = \"mean\""
        );
        write_site_config(work.path(), &manifest, &explain, r#"["sc", "pmap", "sr"]"#)
    };
    let out = work.path().join("out");
    let storage = work.path().join("storage");
    // Orthanc restarted on the same storage, as a site restarts it after a configuration or
    // model change; the study is then processed again on request
    let start = |site: &Path| {
        Orthanc::start(
            &[orthanc::plugin_library().as_path()],
            STABLE_AGE,
            json!({
                "StorageDirectory": storage, "IndexDirectory": storage,
                "DicomXai": {"Enable": true, "Config": site, "Out": out, "StopTimeout": 10.0},
            }),
        )
    };
    let finished = |orthanc: &Orthanc, study: &str, runs: u64| {
        wait_for(
            orthanc,
            "the study processed",
            Duration::from_secs(60),
            || {
                job(orthanc, study).filter(|j| {
                    j["state"] == "done" && j["runs"].as_u64().is_some_and(|r| r >= runs)
                })
            },
        )
    };
    let report_of = |orthanc: &Orthanc, study: &str| {
        orthanc.json(&format!("/dicom-xai/studies/{study}/report"))
    };

    let site = configure(32);
    let orthanc = start(&site);
    let (study, _) = upload(&orthanc, &[common::asset("pydicom/MR_small.dcm")]);
    finished(&orthanc, &study, 1);
    let report = report_of(&orthanc, &study);
    let first = common::output_uids(&report);
    // an overlay, a Parametric Map and the Structured Report, all stored in Orthanc
    assert_eq!(first.len(), 3, "{report}");
    assert!(report["structured_report"].is_object(), "{report}");
    assert_eq!(
        overlay_sop_uids(&orthanc, &study),
        first,
        "{report}\n{:?}",
        series_of(&orthanc, &study)
    );
    let (status, _, log) = orthanc.stop(Duration::from_secs(60));
    assert!(status.success(), "{}", tail(&log, 40));

    // changed [methods.occlusion] patch, then a new checkpoint under the same name: each time
    // new UIDs, and the previous overlays gone from Orthanc and from the output folder
    let mut previous = first;
    for change in ["patch", "model"] {
        match change {
            "patch" => {
                configure(16);
            }
            _ => {
                common::run_support_script("make_toy_model.py", &[model.as_os_str(), "4".as_ref()]);
            }
        }
        let orthanc = start(&site);
        let answer = orthanc.request("POST", &format!("/dicom-xai/studies/{study}/process"), &[]);
        assert!(answer.status < 300, "process: {}", answer.status);
        finished(&orthanc, &study, 1);
        let report = report_of(&orthanc, &study);
        let current = common::output_uids(&report);
        assert!(current.is_disjoint(&previous), "{change}: new UIDs");
        assert_eq!(
            common::superseded_uids(&report),
            previous,
            "{change}: the report says what went"
        );
        assert_eq!(
            overlay_sop_uids(&orthanc, &study),
            current,
            "{change}: Orthanc holds only the current outputs"
        );
        assert_eq!(
            common::overlay_file_uids(&out),
            current,
            "{change}: so does the output folder"
        );
        let (status, _, log) = orthanc.stop(Duration::from_secs(60));
        assert!(status.success(), "{}", tail(&log, 40));
        assert_no_internal_error(&log);
        previous = current;
    }
}
