//! Counters of the daemon and the endpoint that serves them on 127.0.0.1, as Prometheus
//! text (`GET /metrics`), with a liveness check (`GET /health`).
//!
//! Study counts per state come from the journal at each request, so they are right across
//! restarts; the counters of this process (studies done, seconds, deliveries) start at zero.
//! A work-queue worker (`dicom-xai worker`) serves the same endpoint without a journal: its
//! job counters (done, failed, skipped, seconds per study) are its own.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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
    jobs: [AtomicU64; 3],
    job_micros: AtomicU64,
}

/// How a work-queue job ended, as the metrics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// Processed: outputs and report written, acknowledged.
    Done,
    /// The attempt failed: returned to the queue, or dead-lettered after the last one.
    Failed,
    /// Its report already named the job: acknowledged without work.
    Skipped,
}

impl JobOutcome {
    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            JobOutcome::Done => "done",
            JobOutcome::Failed => "failed",
            JobOutcome::Skipped => "skipped",
        }
    }

    const ALL: [JobOutcome; 3] = [JobOutcome::Done, JobOutcome::Failed, JobOutcome::Skipped];
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

    /// A work-queue job ended after `seconds` in this worker.
    pub fn job_finished(&self, outcome: JobOutcome, seconds: f64) {
        self.jobs[outcome as usize].fetch_add(1, Ordering::Relaxed);
        if outcome == JobOutcome::Done {
            self.job_micros
                .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
        }
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
            "dicom_xai_jobs_total",
            "counter",
            "Work-queue jobs ended by this worker, by outcome.",
            JobOutcome::ALL
                .iter()
                .map(|o| {
                    (
                        format!("{{outcome=\"{}\"}}", o.name()),
                        self.jobs[*o as usize].load(Ordering::Relaxed) as f64,
                    )
                })
                .collect(),
        );
        metric(
            "dicom_xai_job_seconds",
            "summary",
            "Wall time of the work-queue jobs this worker processed (seconds per study).",
            vec![
                (
                    "_sum".into(),
                    self.job_micros.load(Ordering::Relaxed) as f64 / 1e6,
                ),
                (
                    "_count".into(),
                    self.jobs[JobOutcome::Done as usize].load(Ordering::Relaxed) as f64,
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

/// How long one request may take from connection to answer, and how many are answered at
/// once: a client that connects and sends nothing (or a byte at a time) holds one handler
/// for at most this long and never stalls a scrape or a health check beside it.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// The whole request head must arrive within this.
    pub request_timeout: Duration,
    /// Requests in hand at once; one more is answered 503 at once.
    pub max_connections: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            request_timeout: Duration::from_secs(5),
            max_connections: 8,
        }
    }
}

/// The largest request head read; a longer one is refused.
const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// Serves the metrics on `address` (loopback) in a thread until `stop`; the study counts
/// come from the journal in `state` (none for a work-queue worker).
pub fn serve(
    address: SocketAddr,
    metrics: Arc<Metrics>,
    state: Option<PathBuf>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(address)?;
    tracing::info!(%address, "metrics endpoint listening");
    serve_on(listener, metrics, state, stop, ServeLimits::default())
}

/// Serves on a bound `listener`: one short-lived thread per request, at most
/// `limits.max_connections` at once, each cut off after `limits.request_timeout`.
pub fn serve_on(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    state: Option<PathBuf>,
    stop: Arc<AtomicBool>,
    limits: ServeLimits,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let state = Arc::new(state);
    let in_hand = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((stream, _)) => {
                    if in_hand.fetch_add(1, Ordering::SeqCst) >= limits.max_connections {
                        in_hand.fetch_sub(1, Ordering::SeqCst);
                        refuse_busy(stream);
                        continue;
                    }
                    let (metrics, state, in_hand) = (
                        Arc::clone(&metrics),
                        Arc::clone(&state),
                        Arc::clone(&in_hand),
                    );
                    let spawned = std::thread::Builder::new()
                        .name("metrics-request".into())
                        .spawn(move || {
                            if let Err(error) = answer(stream, &metrics, &state, limits) {
                                tracing::debug!("metrics request: {error}");
                            }
                            in_hand.fetch_sub(1, Ordering::SeqCst);
                        });
                    if let Err(error) = spawned {
                        tracing::warn!("metrics endpoint: no thread for a request: {error}");
                    }
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(50));
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

/// Reads the request head within the deadline (whatever the client's pace) and answers it.
fn answer(
    mut stream: TcpStream,
    metrics: &Metrics,
    state: &Option<PathBuf>,
    limits: ServeLimits,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    let deadline = Instant::now() + limits.request_timeout;
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request head did not arrive in time",
            ));
        }
        stream.set_read_timeout(Some(left))?;
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..read]);
        if head.len() > MAX_REQUEST_HEAD {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "too long\n",
            );
        }
    }
    stream.set_write_timeout(Some(limits.request_timeout))?;
    let request = String::from_utf8_lossy(&head);
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    match path {
        "/metrics" => {
            let per_state = state
                .as_deref()
                .and_then(|state| {
                    Journal::open_read_only(state)
                        .and_then(|j| j.state_counts())
                        .ok()
                })
                .unwrap_or_default();
            respond(&mut stream, "200 OK", &metrics.render(&per_state))
        }
        "/health" => respond(&mut stream, "200 OK", "ok\n"),
        _ => respond(
            &mut stream,
            "404 Not Found",
            "not found: try /metrics or /health\n",
        ),
    }
}

/// Answers 503 and closes gracefully: the request is drained briefly after the answer, so
/// the client reads the answer instead of a reset.
fn refuse_busy(mut stream: TcpStream) {
    let drain = Duration::from_millis(200);
    let refused = stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_read_timeout(Some(drain)))
        .and_then(|()| stream.set_write_timeout(Some(drain)))
        .and_then(|()| respond(&mut stream, "503 Service Unavailable", "busy\n"))
        .and_then(|()| stream.shutdown(std::net::Shutdown::Write));
    if refused.is_ok() {
        let mut sink = [0u8; 1024];
        let mut drained = 0;
        while drained < MAX_REQUEST_HEAD {
            match stream.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    }
}

fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(address: SocketAddr, path: &str, patience: Duration) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(address)?;
        stream.set_read_timeout(Some(patience))?;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    }

    #[test]
    fn clients_that_send_nothing_neither_stall_a_scrape_nor_stay_forever() {
        let state = tempfile::tempdir().expect("state");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let stop = Arc::new(AtomicBool::new(false));
        let limits = ServeLimits {
            request_timeout: Duration::from_secs(3),
            max_connections: 4,
        };
        let metrics = Arc::new(Metrics::default());
        metrics.study_done(1.5, false);
        serve_on(
            listener,
            metrics,
            Some(state.path().into()),
            Arc::clone(&stop),
            limits,
        )
        .expect("serve");

        // two silent clients and one that trickles a byte at a time
        let silent: Vec<TcpStream> = (0..2)
            .map(|_| TcpStream::connect(address).expect("connect"))
            .collect();
        let mut trickle = TcpStream::connect(address).expect("connect");
        trickle.write_all(b"G").expect("a byte");
        // while they hold their handlers, a scrape and a health check are answered at once
        // (well before any of them would time out: a serial server would wait for them)
        let metrics_text = get(address, "/metrics", Duration::from_secs(2)).expect("scrape");
        assert!(
            metrics_text.starts_with("HTTP/1.1 200 OK"),
            "{metrics_text}"
        );
        assert!(
            metrics_text.contains("dicom_xai_studies_processed_total{outcome=\"done\"} 1"),
            "{metrics_text}"
        );
        let health = get(address, "/health", Duration::from_secs(2)).expect("health");
        assert!(health.ends_with("ok\n"), "{health}");

        // the trickling client is cut off by the total deadline, not per line or byte
        let mut rest = Vec::new();
        let mut closed = false;
        for _ in 0..40 {
            if trickle.write_all(b"E").is_err() {
                closed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
            let mut probe = [0u8; 1];
            trickle.set_nonblocking(true).expect("nonblocking");
            match trickle.read(&mut probe) {
                Ok(0) => closed = true,
                Ok(n) => rest.extend_from_slice(&probe[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => closed = true,
            }
            trickle.set_nonblocking(false).expect("blocking");
            if closed {
                break;
            }
        }
        assert!(
            closed,
            "a request that never ends is cut off by its deadline"
        );
        assert!(rest.is_empty(), "no answer to a request that never ended");
        drop(silent);

        // more requests in hand than the limit: the extra one is told so at once
        let held: Vec<TcpStream> = (0..limits.max_connections)
            .map(|_| TcpStream::connect(address).expect("connect"))
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let busy = get(address, "/health", Duration::from_secs(2)).expect("busy answer");
        assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
        drop(held);
        stop.store(true, Ordering::SeqCst);
    }
}
