//! Counters of the daemon and the endpoint that serves them on 127.0.0.1, as Prometheus
//! text (`GET /metrics`), with a liveness check (`GET /health`).
//!
//! Study counts per state come from the journal at each request, so they are right across
//! restarts; the counters of this process (studies done, seconds, deliveries) start at zero.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use super::journal::{Journal, StudyState};

/// The daemon's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    studies_done: AtomicU64,
    studies_failed: AtomicU64,
    study_micros: AtomicU64,
    files_seen: AtomicU64,
    running: AtomicI64,
    pending_files: AtomicUsize,
    delivered: AtomicU64,
    delivery_failures: AtomicU64,
}

impl Metrics {
    /// A study run finished (failed: its report or its attempts failed).
    pub fn study_done(&self, seconds: f64, failed: bool) {
        let counter = if failed {
            &self.studies_failed
        } else {
            &self.studies_done
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.study_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    /// A DICOM instance was recorded.
    pub fn file_seen(&self) {
        self.files_seen.fetch_add(1, Ordering::Relaxed);
    }

    /// Studies in hand changed by `delta`.
    pub fn running(&self, delta: i64) {
        self.running.fetch_add(delta, Ordering::Relaxed);
    }

    /// Files waiting to become stable.
    pub fn set_pending_files(&self, count: usize) {
        self.pending_files.store(count, Ordering::Relaxed);
    }

    /// Outputs sent to the PACS and attempts that failed.
    pub fn delivered(&self, sent: usize, failed: usize) {
        self.delivered.fetch_add(sent as u64, Ordering::Relaxed);
        self.delivery_failures
            .fetch_add(failed as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, per_state: &[(StudyState, u64)]) -> String {
        let mut text = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: Vec<(String, f64)>| {
            text += &format!("# HELP {name} {help}\n# TYPE {name} {kind}\n");
            for (labels, value) in lines {
                text += &format!("{name}{labels} {value}\n");
            }
        };
        let done = self.studies_done.load(Ordering::Relaxed);
        let failed = self.studies_failed.load(Ordering::Relaxed);
        metric(
            "dicom_xai_studies_processed_total",
            "counter",
            "Study runs finished by this process, by outcome.",
            vec![
                ("{outcome=\"done\"}".into(), done as f64),
                ("{outcome=\"failed\"}".into(), failed as f64),
            ],
        );
        metric(
            "dicom_xai_study_seconds",
            "summary",
            "Wall time of study runs.",
            vec![
                (
                    "_sum".into(),
                    self.study_micros.load(Ordering::Relaxed) as f64 / 1e6,
                ),
                ("_count".into(), (done + failed) as f64),
            ],
        );
        metric(
            "dicom_xai_studies",
            "gauge",
            "Studies in the journal, by state.",
            per_state
                .iter()
                .map(|(state, n)| (format!("{{state=\"{}\"}}", state.name()), *n as f64))
                .collect(),
        );
        let queued = per_state
            .iter()
            .find(|(s, _)| *s == StudyState::Queued)
            .map_or(0, |(_, n)| *n);
        metric(
            "dicom_xai_queue_length",
            "gauge",
            "Studies waiting for a worker.",
            vec![(String::new(), queued as f64)],
        );
        metric(
            "dicom_xai_studies_running",
            "gauge",
            "Studies in hand.",
            vec![(String::new(), self.running.load(Ordering::Relaxed) as f64)],
        );
        metric(
            "dicom_xai_files_pending",
            "gauge",
            "Files in the drop folder waiting to become stable.",
            vec![(
                String::new(),
                self.pending_files.load(Ordering::Relaxed) as f64,
            )],
        );
        metric(
            "dicom_xai_instances_seen_total",
            "counter",
            "DICOM instances recorded by this process.",
            vec![(
                String::new(),
                self.files_seen.load(Ordering::Relaxed) as f64,
            )],
        );
        metric(
            "dicom_xai_deliveries_total",
            "counter",
            "C-STORE deliveries by outcome.",
            vec![
                (
                    "{outcome=\"sent\"}".into(),
                    self.delivered.load(Ordering::Relaxed) as f64,
                ),
                (
                    "{outcome=\"failed\"}".into(),
                    self.delivery_failures.load(Ordering::Relaxed) as f64,
                ),
            ],
        );
        metric(
            "dicom_xai_resident_memory_bytes",
            "gauge",
            "Resident memory of the daemon.",
            vec![(String::new(), resident_bytes() as f64)],
        );
        text
    }
}

/// The process's resident set size, from /proc (0 where there is none).
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Serves the metrics on `address` (loopback) in a thread until `stop`.
pub fn serve(
    address: SocketAddr,
    metrics: Arc<Metrics>,
    state: PathBuf,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    tracing::info!(%address, "metrics endpoint listening");
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((stream, _)) => {
                    if let Err(error) = answer(stream, &metrics, &state) {
                        tracing::debug!("metrics request: {error}");
                    }
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(error) => {
                    tracing::warn!("metrics endpoint: {error}");
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
    });
    Ok(())
}

fn answer(stream: TcpStream, metrics: &Metrics, state: &std::path::Path) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // the headers are read and ignored
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = match path {
        "/metrics" => {
            let per_state = Journal::open_read_only(state)
                .and_then(|j| j.state_counts())
                .unwrap_or_default();
            ("200 OK", metrics.render(&per_state))
        }
        "/health" => ("200 OK", "ok\n".to_string()),
        _ => (
            "404 Not Found",
            "not found: try /metrics or /health\n".to_string(),
        ),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
