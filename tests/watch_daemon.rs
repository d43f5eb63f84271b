//! `dicom-xai watch` as a hospital runs it: studies copied into the drop folder the way a
//! PACS exports them (file by file, slowly, as `.part` then renamed), the daemon killed
//! with SIGKILL part way and restarted, late files, bad files, a configuration changed to
//! nonsense, outputs that cannot be written, and our own overlays coming back.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running daemon; killed when dropped.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(config: &Path, work: &Path) -> Daemon {
        let log = work.join(format!(
            "daemon-{}.log",
            Instant::now().elapsed().as_nanos()
        ));
        let log = unique(log);
        let child = common::binary()
            .arg("watch")
            .arg("--config")
            .arg(config)
            .arg("--log-file")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dicom-xai watch");
        Daemon { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill_9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM; the exit status.
    fn terminate(mut self) -> i32 {
        let log = self.log.clone();
        common::terminate(&mut self.child, Duration::from_secs(120), || {
            std::fs::read_to_string(&log).unwrap_or_default()
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A drop subfolder named the way PACS exports often name them: after the patient.
const PATIENT_FOLDER: &str = "DOE^JOHN 1960";

fn unique(path: PathBuf) -> PathBuf {
    let mut candidate = path.clone();
    let mut i = 0;
    while candidate.exists() {
        i += 1;
        candidate = path.with_extension(format!("{i}.log"));
    }
    candidate
}

/// A site configuration for the daemon: the real VGG16, Grad-CAM on the most tumour-like
/// slice, short settle times; `extra` is appended to `[watch]`.
fn write_config(work: &Path, extra: &str) -> PathBuf {
    let manifest = common::root().join("onnx/manifests/vgg16-kaggle.toml");
    let text = format!(
        r#"
[runtime]
intra_threads = 2
batch_size = 8

[[models]]
manifest = "{manifest}"

[output]
# the overlays alone: the maps and the report have suites of their own
formats = ["sc"]
dir = "{out}"

[quality]
faithfulness_steps = 0

[explain]
methods = ["gradcam"]
slices = "top-k"
top_k = 1

[[rules]]
name = "brain-mr"
[rules.select]
modality = ["MR"]

[watch]
drop = "{drop}"
state = "{state}"
stable = "500ms"
settle = "2s"
retry_after = "1s"
{extra}
"#,
        manifest = manifest.display(),
        out = work.join("out").display(),
        drop = work.join("drop").display(),
        state = work.join("state").display(),
    );
    let path = work.join("site.toml");
    std::fs::write(&path, text).expect("config");
    path
}

fn status(state: &Path) -> Value {
    let output = common::binary()
        .args(["status", "--json", "--state"])
        .arg(state)
        .output()
        .expect("dicom-xai status");
    if !output.status.success() {
        // shown with the test's output when a wait on the status times out
        eprintln!(
            "dicom-xai status failed ({:?}): {}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        );
        return Value::Null;
    }
    serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
}

fn count(status: &Value, state: &str) -> u64 {
    status["counts"][state].as_u64().unwrap_or(0)
}

fn wait_for(what: &str, timeout: Duration, daemon: &Daemon, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; daemon log:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// How a PACS export writes files.
#[derive(Clone, Copy)]
enum Copy {
    /// All at once.
    Burst,
    /// One by one, with a pause between files.
    Slowly,
    /// Each as `<name>.part`, renamed when complete.
    PartThenRename,
}

fn copy_study(files: &[PathBuf], source_root: &Path, target: &Path, how: Copy) {
    for file in files {
        let relative = file.strip_prefix(source_root).expect("below the study");
        let destination = target.join(relative);
        std::fs::create_dir_all(destination.parent().expect("parent")).expect("mkdir");
        match how {
            Copy::Burst => {
                std::fs::copy(file, &destination).expect("copy");
            }
            Copy::Slowly => {
                std::fs::copy(file, &destination).expect("copy");
                std::thread::sleep(Duration::from_millis(60));
            }
            Copy::PartThenRename => {
                let part = destination.with_extension("dcm.part");
                let bytes = std::fs::read(file).expect("read");
                // half now, half a moment later: a transfer in progress
                std::fs::write(&part, &bytes[..bytes.len() / 2]).expect("write");
                std::thread::sleep(Duration::from_millis(20));
                std::fs::write(&part, &bytes).expect("write");
                std::fs::rename(&part, &destination).expect("rename");
            }
        }
    }
}

/// The `.dcm` files under a study's output folder.
fn overlays(study_dir: &Path) -> Vec<PathBuf> {
    common::files_under(study_dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect()
}

/// Every overlay a report names exists, and nothing else is there: one complete set.
fn assert_one_complete_set(out: &Path, uid: &str, expected_series: usize) -> Value {
    let dir = out.join(uid);
    let report: Value = serde_json::from_slice(
        &std::fs::read(dir.join("report.json")).expect("report.json of a done study"),
    )
    .expect("JSON");
    assert_eq!(report["study_instance_uid"], uid);
    let series = report["series"].as_array().expect("series");
    assert_eq!(series.len(), expected_series, "{report:#}");
    let mut named: Vec<PathBuf> = series
        .iter()
        .flat_map(|s| s["models"].as_array().cloned().unwrap_or_default())
        .flat_map(|m| m["explanations"].as_array().cloned().unwrap_or_default())
        .map(|e| dir.join(e["output_file"].as_str().expect("output_file")))
        .collect();
    named.sort();
    assert!(!named.is_empty(), "no overlay in {report:#}");
    assert_eq!(overlays(&dir), named, "exactly the overlays of the report");
    let leftovers: Vec<_> = common::files_under(&dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    report
}

#[test]
fn every_study_is_processed_once_across_a_sigkill_and_inputs_are_untouched() {
    let work = tempfile::tempdir().expect("tempdir");
    let config = write_config(work.path(), "");
    let drop = work.path().join("drop");
    let state = work.path().join("state");
    let out = work.path().join("out");
    std::fs::create_dir_all(&drop).expect("drop");
    let studies: Vec<_> = (1..=3)
        .map(|seed| common::generate_study_seeded("demo", seed))
        .collect();
    let uids: Vec<String> = studies
        .iter()
        .map(|s| {
            s.manifest["studies"][0]["study_instance_uid"]
                .as_str()
                .expect("uid")
                .to_string()
        })
        .collect();

    let daemon = Daemon::start(&config, work.path());
    copy_study(
        &studies[0].dicom_files(),
        &studies[0].root,
        &drop.join("a"),
        Copy::Slowly,
    );
    copy_study(
        &studies[1].dicom_files(),
        &studies[1].root,
        &drop.join("b"),
        Copy::PartThenRename,
    );
    copy_study(
        &studies[2].dicom_files(),
        &studies[2].root,
        &drop.join("c"),
        Copy::Burst,
    );
    // a transfer that never finishes, and a file that is not DICOM
    std::fs::write(drop.join("c/stuck.dcm.part"), b"DICM never finished").expect("write");
    std::fs::write(drop.join("c/notes.txt"), b"exported by the PACS\n").expect("write");
    let before = common::checksums(&drop);

    // kill -9 while a study is in hand
    wait_for(
        "a study to start",
        Duration::from_secs(120),
        &daemon,
        || count(&status(&state), "running") > 0,
    );
    daemon.kill_9();
    let after_kill = status(&state);
    assert!(
        count(&after_kill, "done") < 3,
        "the kill came too late to test anything: {after_kill:#}"
    );

    let daemon = Daemon::start(&config, work.path());
    wait_for("all studies", Duration::from_secs(300), &daemon, || {
        count(&status(&state), "done") == 3
    });
    let final_status = status(&state);
    assert_eq!(count(&final_status, "failed"), 0, "{final_status:#}");
    assert!(
        daemon.log().contains("queued again"),
        "the interrupted study is requeued:\n{}",
        daemon.log()
    );
    let problems = final_status["problem_files"].as_array().expect("list");
    assert!(
        problems
            .iter()
            .any(|p| p["file"].as_str().is_some_and(|f| f.ends_with("notes.txt"))),
        "the text file is recorded as skipped: {problems:#?}"
    );
    for uid in &uids {
        let report = assert_one_complete_set(&out, uid, 1);
        assert_eq!(report["status"], "ok", "{report:#}");
    }
    let rows = final_status["studies"].as_array().expect("studies");
    for row in rows {
        assert_eq!(row["runs"], 1, "each study ran once to completion: {row:#}");
        assert_eq!(row["files"], 24, "every slice joined its study: {row:#}");
    }
    // nothing is redone on a restart
    let done_log = daemon.log();
    assert_eq!(daemon.terminate(), 0, "SIGTERM is a clean stop");
    let daemon = Daemon::start(&config, work.path());
    std::thread::sleep(Duration::from_secs(5));
    let again = status(&state);
    for row in again["studies"].as_array().expect("studies") {
        assert_eq!(row["runs"], 1, "a restart redoes nothing: {row:#}");
    }
    assert_eq!(daemon.terminate(), 0);
    for study in &studies {
        let patient = study.manifest["studies"][0]["patient_id"]
            .as_str()
            .expect("id");
        assert!(
            !done_log.contains(patient),
            "patient IDs never reach the log"
        );
    }
    assert!(
        !done_log.contains("DEMO^BRAIN"),
        "patient names never reach the log"
    );
    assert_eq!(common::checksums(&drop), before, "inputs were modified");
}

#[test]
fn late_series_rerun_alone_and_outputs_written_back_are_not_processed() {
    let work = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        work.path(),
        r#"deliver = ["out", "study-folder"]
metrics = "127.0.0.1:0""#,
    );
    // port 0 is not a useful endpoint: write a real free port
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    std::fs::write(&config, text).expect("config");
    let drop = work.path().join("drop");
    let state = work.path().join("state");
    let out = work.path().join("out");
    std::fs::create_dir_all(&drop).expect("drop");
    let study = common::generate_study_seeded("ordering", 7);
    let uid = study.manifest["studies"][0]["study_instance_uid"]
        .as_str()
        .expect("uid")
        .to_string();
    let files = study.dicom_files();
    let first_series = study.manifest["studies"][0]["series"][0]["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| study.root.join(f.as_str().expect("file")))
        .collect::<Vec<_>>();
    let daemon = Daemon::start(&config, work.path());
    copy_study(&first_series, &study.root, &drop.join("s"), Copy::Burst);
    wait_for(
        "the first series",
        Duration::from_secs(120),
        &daemon,
        || count(&status(&state), "done") == 1,
    );
    let first = assert_one_complete_set(&out, &uid, 1);
    let first_overlay = out.join(&uid).join(
        first["series"][0]["models"][0]["explanations"][0]["output_file"]
            .as_str()
            .expect("file"),
    );
    let first_bytes = std::fs::read(&first_overlay).expect("overlay");

    // the rest of the study arrives late
    let late: Vec<PathBuf> = files
        .iter()
        .filter(|f| !first_series.contains(f))
        .cloned()
        .collect();
    copy_study(&late, &study.root, &drop.join("s"), Copy::Burst);
    // done again, with the three series in the merged report (one rerun, or more if the
    // machine is so loaded that the late files were seen apart)
    let report_path = out.join(&uid).join("report.json");
    wait_for("the rerun", Duration::from_secs(180), &daemon, || {
        let current = status(&state);
        current["studies"][0]["runs"].as_u64().unwrap_or(0) >= 2
            && count(&current, "done") == 1
            && std::fs::read(&report_path)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
                .is_some_and(|r| r["series"].as_array().map_or(0, Vec::len) == 3)
    });
    let runs = status(&state)["studies"][0]["runs"].clone();
    let report = assert_one_complete_set(&out, &uid, 3);
    assert_eq!(
        std::fs::read(&first_overlay).expect("overlay"),
        first_bytes,
        "the first series was not redone"
    );
    // the outputs were written back into the study folder, recognised as ours
    let written_back = overlays(&drop.join("s/dicom-xai"));
    let explanations = report["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|s| {
            s["models"][0]["explanations"]
                .as_array()
                .map_or(0, Vec::len)
        })
        .sum::<usize>();
    assert_eq!(written_back.len(), explanations);
    std::thread::sleep(Duration::from_secs(4));
    let after = status(&state);
    assert_eq!(
        after["studies"][0]["runs"], runs,
        "our own overlays started no run"
    );
    assert_eq!(count(&after, "done"), 1);

    // the metrics endpoint answers in Prometheus text
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics");
    use std::io::{Read, Write};
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("request");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("response");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("dicom_xai_studies{state=\"done\"} 1"),
        "{text}"
    );
    assert!(text.contains("dicom_xai_queue_length 0"), "{text}");
    assert_eq!(daemon.terminate(), 0);
}

#[test]
fn bad_inputs_and_failures_are_recorded_and_the_daemon_goes_on() {
    let work = tempfile::tempdir().expect("tempdir");
    let config = write_config(work.path(), "max_attempts = 2");
    let drop = work.path().join("drop");
    let state = work.path().join("state");
    let out = work.path().join("out");
    std::fs::create_dir_all(&drop).expect("drop");
    std::fs::create_dir_all(&out).expect("out");
    let daemon = Daemon::start(&config, work.path());

    // a CT study no rule takes, a truncated MR slice, a text file, in a folder named like a
    // patient (drop folders often are): the name must never reach the log
    let patient = drop.join(PATIENT_FOLDER);
    let ct = common::asset("pydicom/CT_small.dcm");
    std::fs::create_dir_all(patient.clone()).expect("mkdir");
    std::fs::copy(&ct, patient.join("ct.dcm")).expect("copy");
    let mr = std::fs::read(common::asset("pydicom/MR_small.dcm")).expect("MR_small");
    std::fs::write(patient.join("truncated.dcm"), &mr[..mr.len() - 3000]).expect("write");
    std::fs::write(patient.join("readme.txt"), b"hello").expect("write");
    wait_for(
        "the CT and MR studies",
        Duration::from_secs(120),
        &daemon,
        || {
            let s = status(&state);
            count(&s, "done") + count(&s, "failed") == 2
        },
    );
    let s = status(&state);
    let ct_uid = dicom_object::open_file(&ct)
        .expect("CT")
        .element(dicom_dictionary_std::tags::STUDY_INSTANCE_UID)
        .expect("uid")
        .to_str()
        .expect("text")
        .trim_end_matches('\0')
        .to_string();
    let ct_report: Value = serde_json::from_slice(
        &std::fs::read(out.join(&ct_uid).join("report.json")).expect("the CT study's report"),
    )
    .expect("JSON");
    assert_eq!(
        ct_report["skipped_series"].as_array().map(Vec::len),
        Some(1),
        "no rule takes the CT series: {ct_report:#}"
    );
    assert!(
        s["problem_files"]
            .as_array()
            .expect("list")
            .iter()
            .any(|p| p["file"]
                .as_str()
                .is_some_and(|f| f.ends_with("readme.txt"))),
        "{s:#}"
    );

    // files whose StudyInstanceUID is not a UID: each a problem file naming the attribute,
    // and nothing written for them (the whole tree is listed at the end)
    let hostile = common::write_hostile_uid_files(&patient.join("hostile"));
    wait_for(
        "the files with hostile UIDs",
        Duration::from_secs(60),
        &daemon,
        || {
            let problems = status(&state)["problem_files"].clone();
            hostile.iter().all(|path| {
                problems.as_array().into_iter().flatten().any(|p| {
                    p["file"].as_str() == path.to_str()
                        && p["kind"] == "failed"
                        && p["reason"]
                            .as_str()
                            .is_some_and(|r| r.contains("StudyInstanceUID"))
                })
            })
        },
    );

    // the configuration is changed to nonsense: rejected, the old one kept
    let good = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, "this is = [not toml").expect("write");
    wait_for("the rejection", Duration::from_secs(30), &daemon, || {
        daemon.log().contains("configuration rejected")
    });

    // outputs that cannot be written: the study fails after its attempts, others go on
    let blocked = common::generate_study_seeded("demo", 11);
    let blocked_uid = blocked.manifest["studies"][0]["study_instance_uid"]
        .as_str()
        .expect("uid")
        .to_string();
    std::fs::write(
        out.join(&blocked_uid),
        b"a file where the study folder goes",
    )
    .expect("block");
    copy_study(
        &blocked.dicom_files(),
        &blocked.root,
        &drop.join("blocked"),
        Copy::Burst,
    );
    wait_for(
        "the blocked study to fail",
        Duration::from_secs(240),
        &daemon,
        || count(&status(&state), "failed") >= 1,
    );
    let s = status(&state);
    let failed = s["studies"]
        .as_array()
        .expect("studies")
        .iter()
        .find(|r| r["uid"] == blocked_uid.as_str())
        .expect("the blocked study");
    assert_eq!(failed["state"], "failed", "{failed:#}");
    assert_eq!(failed["attempts"], 2);
    assert!(
        failed["reason"]
            .as_str()
            .is_some_and(|r| r.contains(&blocked_uid)),
        "the reason names the output: {failed:#}"
    );
    // a setting fixed at start is named, not ignored
    std::fs::write(&config, format!("{good}workers = 3\n")).expect("workers");
    wait_for(
        "the restart warning",
        Duration::from_secs(30),
        &daemon,
        || {
            daemon
                .log()
                .lines()
                .any(|l| l.contains("workers") && l.contains("restart to apply"))
        },
    );
    std::fs::write(&config, good).expect("restore");
    let log = daemon.log();
    let log_file = daemon.log.clone();
    assert_eq!(daemon.terminate(), 0, "still alive after all that:\n{log}");
    let log = std::fs::read_to_string(log_file).expect("the log");
    assert!(log.contains("[file "), "paths are logged hashed:\n{log}");
    for line in log.lines() {
        assert!(
            !line.contains("DOE") && !line.contains("JOHN"),
            "the patient-named folder reached the log: {line}"
        );
    }
    let logs: Vec<PathBuf> = common::files_under(work.path())
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "log") && f.parent() == Some(work.path()))
        .collect();
    let mut allowed: Vec<&Path> = vec![&drop, &state, &out, &config];
    allowed.extend(logs.iter().map(PathBuf::as_path));
    common::assert_nothing_written_outside(work.path(), &allowed);
}

#[test]
fn overlays_reach_a_real_c_store_receiver_and_a_peer_that_is_down_is_retried() {
    let receiver = common::receiver::storescp(&[]);
    let work = tempfile::tempdir().expect("tempdir");
    // first a peer that is down: deliveries wait and retry
    let down = common::receiver::free_port();
    let config = write_config(
        work.path(),
        &format!(
            r#"deliver = ["out", "pacs"]
[watch.pacs]
peer = "XAI-TEST@127.0.0.1:{down}"
timeout = "5s""#
        ),
    );
    let drop = work.path().join("drop");
    let state = work.path().join("state");
    std::fs::create_dir_all(&drop).expect("drop");
    let daemon = Daemon::start(&config, work.path());
    std::fs::copy(
        common::asset("pydicom/MR_small.dcm"),
        drop.join("MR_small.dcm"),
    )
    .expect("copy");
    wait_for(
        "a failed delivery",
        Duration::from_secs(120),
        &daemon,
        || daemon.log().contains("C-STORE failed"),
    );
    let pending = status(&state)["deliveries"].clone();
    assert!(
        pending
            .as_array()
            .expect("deliveries")
            .iter()
            .any(|d| d["state"] == "pending"),
        "a delivery that failed once is still pending: {pending:#}"
    );
    // the PACS comes back (the configuration now names the live receiver): delivered
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace(&format!(":{down}"), &format!(":{}", receiver.port));
    std::fs::write(&config, text).expect("config");
    wait_for("the delivery", Duration::from_secs(120), &daemon, || {
        !receiver.received().is_empty()
    });
    std::thread::sleep(Duration::from_millis(500));
    let received = receiver.received();
    assert_eq!(received.len(), 1, "one overlay: {received:?}");
    common::assert_no_dciodvfy_errors(&received[0]);
    let delivered = status(&state)["deliveries"].clone();
    assert!(
        delivered
            .as_array()
            .expect("deliveries")
            .iter()
            .any(|d| d["state"] == "done" && d["count"] == 1),
        "{delivered:#}"
    );
    assert_eq!(daemon.terminate(), 0);
}

#[test]
fn a_burst_of_a_hundred_studies_is_processed_once_each() {
    const STUDIES: usize = 100;
    let work = tempfile::tempdir().expect("tempdir");
    let config = write_config(work.path(), "");
    let drop = work.path().join("drop");
    let state = work.path().join("state");
    let out = work.path().join("out");
    let staging = work.path().join("staging");
    common::run_support_script(
        "make_burst.py",
        &[
            "--source".as_ref(),
            common::asset("pydicom/MR_small.dcm").as_os_str(),
            "--out".as_ref(),
            staging.as_os_str(),
            "--count".as_ref(),
            STUDIES.to_string().as_ref(),
        ],
    );
    std::fs::create_dir_all(&drop).expect("drop");
    let daemon = Daemon::start(&config, work.path());
    // all at once: the PACS renames a finished export into place
    std::fs::rename(&staging, drop.join("burst")).expect("rename into the drop folder");
    let started = Instant::now();
    wait_for("the burst", Duration::from_secs(600), &daemon, || {
        count(&status(&state), "done") == STUDIES as u64
    });
    eprintln!(
        "{STUDIES} studies in {:.1} s ({:.1} studies per minute)",
        started.elapsed().as_secs_f64(),
        STUDIES as f64 * 60.0 / started.elapsed().as_secs_f64()
    );
    let s = status(&state);
    assert_eq!(count(&s, "failed"), 0, "{s:#}");
    for row in s["studies"].as_array().expect("studies") {
        assert_eq!(row["runs"], 1, "{row:#}");
        assert_eq!(row["files"], 1, "{row:#}");
        assert_one_complete_set(&out, row["uid"].as_str().expect("uid"), 1);
    }
    assert_eq!(daemon.terminate(), 0);
}

#[test]
fn inputs_are_moved_to_the_archive_when_the_site_asks_and_not_processed_again() {
    let work = tempfile::tempdir().expect("tempdir");
    let archive = work.path().join("archive");
    let config = write_config(
        work.path(),
        &format!("after = \"move\"\narchive = \"{}\"", archive.display()),
    );
    let drop = work.path().join("drop");
    let state = work.path().join("state");
    std::fs::create_dir_all(drop.join("study")).expect("drop");
    let source = common::asset("pydicom/MR_small.dcm");
    let daemon = Daemon::start(&config, work.path());
    std::fs::copy(&source, drop.join("study/IM0001.dcm")).expect("copy");
    wait_for("the move", Duration::from_secs(120), &daemon, || {
        archive.join("study/IM0001.dcm").is_file()
    });
    assert!(!drop.join("study/IM0001.dcm").exists(), "moved, not copied");
    assert_eq!(
        std::fs::read(archive.join("study/IM0001.dcm")).expect("archived"),
        std::fs::read(&source).expect("source"),
        "the archived file is the input, unchanged"
    );
    std::thread::sleep(Duration::from_secs(3));
    let s = status(&state);
    assert_eq!(count(&s, "done"), 1, "{s:#}");
    assert_eq!(s["studies"][0]["runs"], 1, "{s:#}");
    assert_eq!(daemon.terminate(), 0);
}
