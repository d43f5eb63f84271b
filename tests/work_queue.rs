//! The work queue against a real RabbitMQ: `watch --broker` publishes settled studies,
//! `dicom-xai worker` processes run them. Each test starts its own broker (Debian's
//! `rabbitmq-server`, loopback ports, a temporary database, a node name of its own), stopped
//! when the test ends or fails. The model is the toy known-answer classifier of
//! `make_toy_model.py` with occlusion, so a study takes a fraction of a second.

mod common;
#[path = "support/rabbit.rs"]
mod rabbit;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use dicom_xai::queue::{Broker, Job, QUEUE};
use rabbit::{Rabbit, free_port};
use serde_json::Value;

/// One test at a time: each starts a broker, a watcher and workers on a 2-core machine.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A dicom-xai process (watcher or worker); killed when dropped.
struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    fn start(args: &[&std::ffi::OsStr], log: PathBuf, env: &[(&str, &str)]) -> Process {
        let mut command = common::binary();
        command
            .arg("--log-file")
            .arg(&log)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().expect("start dicom-xai");
        Process { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill_9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM; the exit status.
    fn terminate(&mut self) -> i32 {
        let log = self.log.clone();
        common::terminate(&mut self.child, Duration::from_secs(60), || {
            std::fs::read_to_string(&log).unwrap_or_default()
        })
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test's folders, site configuration and processes.
struct Site {
    work: tempfile::TempDir,
    config: PathBuf,
    rabbit: Rabbit,
}

impl Site {
    fn new() -> Site {
        let work = tempfile::tempdir().expect("tempdir");
        let model = work.path().join("model");
        common::run_support_script("make_toy_model.py", &[model.as_os_str()]);
        let config = work.path().join("site.toml");
        let text = format!(
            r#"
[runtime]
intra_threads = 1
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
methods = ["occlusion"]
slices = "top-k"
top_k = 1

[methods.occlusion]
patch = 16
stride = 16
baseline = "mean"

[[rules]]
name = "brain-mr"
[rules.select]
modality = ["MR"]

[watch]
drop = "{drop}"
state = "{state}"
stable = "300ms"
settle = "1s"
retry_after = "1s"
"#,
            manifest = model.join("toy.toml").display(),
            out = work.path().join("out").display(),
            drop = work.path().join("drop").display(),
            state = work.path().join("state").display(),
        );
        std::fs::write(&config, text).expect("config");
        std::fs::create_dir_all(work.path().join("drop")).expect("drop");
        let rabbit = Rabbit::start(work.path());
        Site {
            work,
            config,
            rabbit,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    fn cache(&self) -> String {
        self.path("cache").display().to_string()
    }

    fn watcher(&self) -> Process {
        let url = self.rabbit.url();
        Process::start(
            &[
                "watch".as_ref(),
                "--config".as_ref(),
                self.config.as_os_str(),
                "--broker".as_ref(),
                url.as_ref(),
            ],
            self.path("watcher.log"),
            &[("DICOM_XAI_CACHE", &self.cache())],
        )
    }

    /// A worker with its metrics on a port of its own; `pause`: the test hook's seconds.
    fn worker(&self, name: &str, pause: Option<&str>) -> (Process, u16) {
        let port = free_port();
        let url = self.rabbit.url();
        let metrics = format!("127.0.0.1:{port}");
        let cache = self.cache();
        let mut env = vec![("DICOM_XAI_CACHE", cache.as_str())];
        if let Some(pause) = pause {
            env.push(("DICOM_XAI_TEST_PAUSE_BEFORE_ACK", pause));
        }
        let process = Process::start(
            &[
                "worker".as_ref(),
                "--config".as_ref(),
                self.config.as_os_str(),
                "--broker".as_ref(),
                url.as_ref(),
                "--metrics".as_ref(),
                metrics.as_ref(),
            ],
            self.path(&format!("{name}.log")),
            &env,
        );
        (process, port)
    }

    /// `count` single-slice studies written by make_burst.py into `folder` (made elsewhere,
    /// then renamed into the drop folder at once, as a PACS export ends).
    fn drop_studies(&self, folder: &str, count: usize, first: usize) -> Vec<String> {
        let staging = self.path(&format!("staging-{folder}"));
        common::run_support_script(
            "make_burst.py",
            &[
                "--source".as_ref(),
                common::asset("pydicom/MR_small.dcm").as_os_str(),
                "--out".as_ref(),
                staging.as_os_str(),
                "--count".as_ref(),
                (first + count).to_string().as_ref(),
            ],
        );
        // make_burst numbers from 0: keep studies first.. only
        for index in 0..first {
            std::fs::remove_dir_all(staging.join(format!("study{index:03}"))).expect("remove");
        }
        let uids = study_uids(&staging);
        std::fs::rename(&staging, self.path("drop").join(folder)).expect("into the drop folder");
        uids
    }

    fn report(&self, uid: &str) -> Option<Value> {
        let bytes = std::fs::read(self.path("out").join(uid).join("report.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn status(&self) -> Value {
        let output = common::binary()
            .args(["status", "--json", "--state"])
            .arg(self.path("state"))
            .arg("--broker")
            .arg(self.rabbit.url())
            .output()
            .expect("dicom-xai status");
        if !output.status.success() {
            eprintln!(
                "dicom-xai status failed ({:?}): {}",
                output.status.code(),
                String::from_utf8_lossy(&output.stderr)
            );
            return Value::Null;
        }
        serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
    }
}

/// The StudyInstanceUIDs of the studies under a folder, read with the library's scan.
fn study_uids(dir: &Path) -> Vec<String> {
    let scanned = dicom_xai::dicom::scan::scan(&[dir.to_path_buf()]);
    scanned.studies.iter().map(|s| s.uid.clone()).collect()
}

/// A worker's counter `dicom_xai_jobs_total{outcome="..."}` (0 when it does not answer).
fn jobs(port: u16, outcome: &str) -> u64 {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").is_err() {
        return 0;
    }
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    let wanted = format!("dicom_xai_jobs_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&wanted))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn total(ports: &[u16], outcome: &str) -> u64 {
    ports.iter().map(|p| jobs(*p, outcome)).sum()
}

fn wait_for(what: &str, timeout: Duration, logs: &[&Process], mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() >= deadline {
            let logs: Vec<String> = logs
                .iter()
                .map(|p| format!("--- {}\n{}", p.log.display(), p.log()))
                .collect();
            panic!("timed out waiting for {what}\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The overlay files under a study's output folder: (file name = SOP UID, modified).
fn overlay_files(study_dir: &Path) -> Vec<(String, std::time::SystemTime)> {
    common::files_under(study_dir)
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "dcm"))
        .map(|f| {
            let modified = f.metadata().and_then(|m| m.modified()).expect("mtime");
            (
                f.file_name().expect("name").to_string_lossy().into_owned(),
                modified,
            )
        })
        .collect()
}

/// The relative paths of every overlay file under `out`.
fn output_paths(out: &Path) -> BTreeSet<PathBuf> {
    common::files_under(out)
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "dcm"))
        .map(|f| f.strip_prefix(out).expect("below out").to_path_buf())
        .collect()
}

#[test]
fn twenty_studies_three_workers_each_processed_exactly_once_as_run_would() {
    let _turn = take_turn();
    let site = Site::new();
    let (mut a, port_a) = site.worker("worker-a", None);
    let (mut b, port_b) = site.worker("worker-b", None);
    let (mut c, port_c) = site.worker("worker-c", None);
    let mut watcher = site.watcher();
    let ports = [port_a, port_b, port_c];
    let started = Instant::now();
    let uids = site.drop_studies("burst", 20, 0);
    assert_eq!(uids.len(), 20);
    wait_for(
        "20 jobs done",
        Duration::from_secs(120),
        &[&watcher, &a, &b, &c],
        || total(&ports, "done") >= 20 && uids.iter().all(|u| site.report(u).is_some()),
    );
    eprintln!(
        "20 studies through the queue in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // a moment for anything that would be processed twice
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(total(&ports, "done"), 20, "each job processed once");
    assert_eq!(total(&ports, "skipped"), 0);
    assert_eq!(total(&ports, "failed"), 0);

    let status = site.status();
    assert_eq!(status["counts"]["published"], 20, "{status:#}");
    assert_eq!(status["jobs_waiting"], 0, "{status:#}");
    assert_eq!(status["dead_jobs"], Value::Array(vec![]), "{status:#}");
    let mut job_ids = BTreeSet::new();
    for uid in &uids {
        let report = site.report(uid).expect("report");
        assert_eq!(report["status"], "ok", "{report:#}");
        let job_id = report["job_id"].as_str().expect("job_id in report.json");
        assert_eq!(job_id.len(), 64);
        job_ids.insert(job_id.to_string());
        // one overlay per study, each listed once
        let listed = common::explanation_output_uids(&report);
        let files = common::overlay_file_uids(&site.path("out").join(uid));
        assert_eq!(listed.len(), 1, "{report:#}");
        assert!(listed.is_subset(&files), "{listed:?} {files:?}");
    }
    assert_eq!(job_ids.len(), 20, "a job id per study");

    // a single `run` of the same studies writes the same files with the same UIDs
    let run_out = site.path("run-out");
    let output = common::binary()
        .env("DICOM_XAI_CACHE", site.cache())
        .args(["run", "--config"])
        .arg(&site.config)
        .arg("--out")
        .arg(&run_out)
        .arg(site.path("drop"))
        .output()
        .expect("dicom-xai run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output_paths(&site.path("out")), output_paths(&run_out));
    for uid in &uids {
        let run_report: Value = serde_json::from_slice(
            &std::fs::read(run_out.join(uid).join("report.json")).expect("run report"),
        )
        .expect("json");
        assert_eq!(
            common::explanation_output_uids(&site.report(uid).expect("report")),
            common::explanation_output_uids(&run_report)
        );
        assert!(run_report.get("job_id").is_none(), "run records no job");
    }

    for worker in [&mut a, &mut b, &mut c] {
        assert_eq!(worker.terminate(), 0, "{}", worker.log());
    }
    assert_eq!(watcher.terminate(), 0, "{}", watcher.log());
    // UIDs in the logs, never the patients' names or IDs (make_burst.py: BURST^NNNN, BURSTNNNN)
    for process in [&a, &b, &c, &watcher] {
        let log = process.log();
        assert!(log.contains("job"), "{log}");
        assert!(
            !log.contains("BURST"),
            "patient data in {}",
            process.log.display()
        );
    }
}

#[test]
fn a_worker_killed_before_its_ack_has_its_job_redelivered_and_rewritten_with_the_same_uids() {
    let _turn = take_turn();
    let site = Site::new();
    let mut watcher = site.watcher();
    // a worker that writes a study's outputs and report, then is killed before its ack
    let killed_before_ack = |name: &str, folder: &str, index: usize| {
        let (mut paused, _) = site.worker(name, Some("120"));
        let uid = site.drop_studies(folder, 1, index).remove(0);
        wait_for(
            "the report of the paused worker",
            Duration::from_secs(60),
            &[&watcher, &paused],
            || {
                site.report(&uid).is_some()
                    && paused.log().contains("pausing before the acknowledgement")
            },
        );
        let job_id = site.report(&uid).expect("report")["job_id"]
            .as_str()
            .expect("job id")
            .to_string();
        paused.kill_9();
        let study_dir = site.path("out").join(&uid);
        (uid, job_id, study_dir)
    };
    let names = |files: &[(String, std::time::SystemTime)]| {
        files.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>()
    };

    // killed after its report was written: the redelivered job is acknowledged without work
    let (_, _, study_dir) = killed_before_ack("worker-paused-1", "one", 0);
    let before = overlay_files(&study_dir);
    assert_eq!(before.len(), 1, "{before:?}");
    let (mut second, port) = site.worker("worker-second", None);
    wait_for(
        "the redelivered job skipped",
        Duration::from_secs(60),
        &[&watcher, &second],
        || jobs(port, "skipped") == 1,
    );
    assert_eq!(jobs(port, "done"), 0);
    assert_eq!(overlay_files(&study_dir), before, "nothing written again");
    assert_eq!(second.terminate(), 0, "{}", second.log());

    // killed before the report was renamed into place (outputs written, no report): the
    // redelivered job is processed again and rewrites the same files
    let (uid, job_id, study_dir) = killed_before_ack("worker-paused-2", "two", 1);
    std::fs::remove_file(study_dir.join("report.json")).expect("remove report");
    let before = overlay_files(&study_dir);
    assert_eq!(before.len(), 1, "{before:?}");
    std::thread::sleep(Duration::from_millis(1100)); // a later mtime for rewritten files
    let (mut third, port) = site.worker("worker-third", None);
    wait_for(
        "the redelivered job done",
        Duration::from_secs(60),
        &[&watcher, &third],
        || jobs(port, "done") == 1,
    );
    let after = overlay_files(&study_dir);
    assert_eq!(
        names(&after),
        names(&before),
        "the same UIDs, nothing added"
    );
    assert!(after[0].1 > before[0].1, "the overlay was written again");
    let report = site.report(&uid).expect("report rewritten");
    assert_eq!(report["job_id"], job_id.as_str());
    assert_eq!(
        common::explanation_output_uids(&report),
        names(&after)
            .iter()
            .map(|n| n.trim_end_matches(".dcm").to_string())
            .collect()
    );
    assert_eq!(jobs(port, "skipped"), 0);
    assert_eq!(third.terminate(), 0, "{}", third.log());

    // SIGTERM with a job in hand: the job finishes and is acknowledged, then the worker exits
    let (mut stopping, _) = site.worker("worker-stopping", Some("3"));
    let late = site.drop_studies("three", 1, 2);
    wait_for(
        "the job in the stopping worker's hands",
        Duration::from_secs(60),
        &[&watcher, &stopping],
        || {
            stopping
                .log()
                .contains("pausing before the acknowledgement")
        },
    );
    assert_eq!(stopping.terminate(), 0, "{}", stopping.log());
    assert!(stopping.log().contains("job done"), "{}", stopping.log());
    assert!(
        site.report(&late[0])
            .is_some_and(|r| r["job_id"].is_string())
    );
    let status = site.status();
    assert_eq!(
        status["jobs_waiting"], 0,
        "acknowledged, not returned: {status:#}"
    );
    assert_eq!(status["counts"]["published"], 3, "{status:#}");
    assert_eq!(watcher.terminate(), 0, "{}", watcher.log());
}

#[test]
fn a_poison_job_ends_in_the_dead_letter_queue_and_the_others_are_done() {
    let _turn = take_turn();
    let site = Site::new();
    let (mut a, port_a) = site.worker("worker-a", None);
    let (mut b, port_b) = site.worker("worker-b", None);
    let mut watcher = site.watcher();
    // a job whose files are gone from the shared input location
    let broker = Broker::connect(&site.rabbit.url()).expect("broker");
    let poison = Job {
        job_id: "0".repeat(64),
        study_instance_uid: "1.2.3.4.5".into(),
        files: vec![site.path("drop/gone/IM0001.dcm")],
        sop_instance_uids: vec!["1.2.3.4.5.6".into()],
        models: Vec::new(),
        config_digest: String::new(),
    };
    broker
        .publish(QUEUE, &poison.to_bytes(), &poison.job_id, None)
        .expect("publish the poison job");
    // and a message that is not a job at all: dead at its first delivery
    broker
        .publish(QUEUE, b"not a job", "garbage", None)
        .expect("publish garbage");
    broker.close();
    let uids = site.drop_studies("good", 3, 0);
    let ports = [port_a, port_b];
    wait_for(
        "3 jobs done and the poison job dead",
        Duration::from_secs(90),
        &[&watcher, &a, &b],
        || {
            total(&ports, "done") == 3
                && site.status()["dead_jobs"]
                    .as_array()
                    .is_some_and(|d| d.len() == 2)
        },
    );
    assert_eq!(
        total(&ports, "failed"),
        u64::from(dicom_xai::queue::DELIVERY_LIMIT) + 1,
        "the poison job tried DELIVERY_LIMIT times, the garbage once"
    );
    let status = site.status();
    let dead_jobs = status["dead_jobs"].as_array().expect("dead jobs");
    let garbage = dead_jobs
        .iter()
        .find(|d| d["job_id"] == "garbage")
        .expect("the garbage is dead");
    assert!(
        garbage["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("not a job")),
        "{garbage:#}"
    );
    let dead = dead_jobs
        .iter()
        .find(|d| d["job_id"] != "garbage")
        .expect("the poison job is dead");
    assert_eq!(dead["job_id"], poison.job_id.as_str(), "{status:#}");
    assert_eq!(dead["study_instance_uid"], "1.2.3.4.5");
    let error = dead["error"].as_str().expect("error");
    assert!(
        error.contains("none of the job's 1 files can be read"),
        "{error}"
    );
    // listing the dead jobs leaves them there
    assert_eq!(site.status()["dead_jobs"].as_array().map(Vec::len), Some(2));
    for uid in &uids {
        assert_eq!(site.report(uid).expect("report")["status"], "ok");
    }
    assert!(
        !site.path("out/1.2.3.4.5").exists(),
        "nothing written for it"
    );
    // the text form names it too
    let text = common::binary()
        .args(["status", "--broker", &site.rabbit.url()])
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("dead jobs (2)") && text.contains("1.2.3.4.5"),
        "{text}"
    );
    assert!(text.contains("jobs waiting for a worker: 0"), "{text}");
    for worker in [&mut a, &mut b] {
        assert_eq!(worker.terminate(), 0, "{}", worker.log());
    }
    assert_eq!(watcher.terminate(), 0, "{}", watcher.log());
}

#[test]
fn the_broker_stopped_mid_run_and_restarted_loses_nothing_and_repeats_nothing() {
    let _turn = take_turn();
    let mut site = Site::new();
    let (mut a, port_a) = site.worker("worker-a", None);
    let (mut b, port_b) = site.worker("worker-b", None);
    let mut watcher = site.watcher();
    let ports = [port_a, port_b];
    let mut uids = site.drop_studies("early", 6, 0);
    wait_for(
        "some jobs done",
        Duration::from_secs(60),
        &[&watcher, &a, &b],
        || total(&ports, "done") >= 2,
    );
    site.rabbit.stop();
    // studies that settle while the broker is away stay in the watcher's journal
    uids.extend(site.drop_studies("late", 6, 6));
    wait_for(
        "the watcher failing to publish",
        Duration::from_secs(30),
        &[&watcher],
        || watcher.log().contains("not handed over, queued again"),
    );
    site.rabbit.launch();
    wait_for(
        "every study done",
        Duration::from_secs(120),
        &[&watcher, &a, &b],
        || uids.iter().all(|u| site.report(u).is_some()) && total(&ports, "done") >= 12,
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(uids.len(), 12);
    assert_eq!(total(&ports, "done"), 12, "nothing processed twice");
    assert_eq!(total(&ports, "failed"), 0);
    let status = site.status();
    assert_eq!(status["counts"]["published"], 12, "{status:#}");
    assert_eq!(status["jobs_waiting"], 0, "{status:#}");
    assert_eq!(status["dead_jobs"], Value::Array(vec![]));
    for uid in &uids {
        let report = site.report(uid).expect("report");
        assert_eq!(report["status"], "ok");
        assert!(report["job_id"].is_string());
        assert_eq!(
            common::overlay_file_uids(&site.path("out").join(uid)).len(),
            1
        );
    }
    for worker in [&mut a, &mut b] {
        assert_eq!(worker.terminate(), 0, "{}", worker.log());
    }
    assert_eq!(watcher.terminate(), 0, "{}", watcher.log());

    // the services a test starts are stopped with it: the broker's own epmd too
    let epmd = ("127.0.0.1", site.rabbit.epmd_port());
    assert!(
        std::net::TcpStream::connect(epmd).is_ok(),
        "the node's epmd"
    );
    drop(site);
    assert!(
        std::net::TcpStream::connect(epmd).is_err(),
        "epmd still runs on port {} after the test",
        epmd.1
    );
}

#[test]
fn a_watcher_with_a_broker_keeps_inputs_in_place_and_worker_metrics_stay_on_loopback() {
    let work = tempfile::tempdir().expect("tempdir");
    let model = work.path().join("model");
    common::run_support_script("make_toy_model.py", &[model.as_os_str()]);
    let config = work.path().join("site.toml");
    std::fs::write(
        &config,
        format!(
            "[[models]]\nmanifest = \"{}\"\n\n[[rules]]\nname = \"mr\"\n[rules.select]\n\
             modality = [\"MR\"]\n\n[watch]\ndrop = \"{}\"\nstate = \"{}\"\n\
             after = \"move\"\narchive = \"{}\"\n",
            model.join("toy.toml").display(),
            work.path().join("drop").display(),
            work.path().join("state").display(),
            work.path().join("archive").display(),
        ),
    )
    .expect("config");
    let output = common::binary()
        .args(["watch", "--config"])
        .arg(&config)
        .args(["--broker", "amqp://127.0.0.1:1/%2f"])
        .output()
        .expect("dicom-xai watch");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("after must be \"keep\""), "{stderr}");
    // and a worker's metrics stay on the loopback address, as the daemon's do
    let output = common::binary()
        .args(["worker", "--config"])
        .arg(&config)
        .args([
            "--broker",
            "amqp://127.0.0.1:1/%2f",
            "--metrics",
            "0.0.0.0:9101",
        ])
        .output()
        .expect("dicom-xai worker");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("loopback address only"), "{stderr}");
}
