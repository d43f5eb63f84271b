//! A real Orthanc for the tests (Debian's `/usr/sbin/Orthanc`): started on free loopback
//! ports with a temporary storage folder, spoken to over HTTP, stopped by its pid.
#![allow(dead_code)] // each test uses a different subset

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Debian's Orthanc.
pub const ORTHANC: &str = "/usr/sbin/Orthanc";
/// Debian's `orthanc-webviewer` plugin.
pub const WEB_VIEWER: &str = "/usr/share/orthanc/plugins/libOrthancWebViewer.so";
/// Debian's `orthanc-dicomweb` plugin.
pub const DICOMWEB: &str = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so";

/// The plugin library, built for the profile these tests were built with (a no-op when
/// `make build` already built it), once per test binary.
pub fn plugin_library() -> PathBuf {
    static LIBRARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    LIBRARY.get_or_init(build_plugin).clone()
}

fn build_plugin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    // target/<profile>/deps/<test> -> target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--locked", "-p", "dicom-xai-orthanc"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let output = build.output().expect("cannot run cargo");
    assert!(
        output.status.success(),
        "cargo build -p dicom-xai-orthanc failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let library = profile_dir.join("libdicom_xai_orthanc.so");
    assert!(library.exists(), "{} was not built", library.display());
    library
}

/// Two free TCP ports on the loopback interface.
fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let b = TcpListener::bind("127.0.0.1:0").expect("a free port");
    (
        a.local_addr().expect("port").port(),
        b.local_addr().expect("port").port(),
    )
}

/// A running Orthanc.
pub struct Orthanc {
    child: Option<Child>,
    /// Its HTTP port.
    pub http: u16,
    /// Its DICOM port.
    pub dicom: u16,
    /// Its folder (configuration, storage, log).
    pub dir: PathBuf,
    log: PathBuf,
    _temporary: tempfile::TempDir,
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON (panics when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

impl Orthanc {
    /// Starts Orthanc with `plugins` and `extra` merged into a minimal configuration
    /// (loopback only, no authentication, StableAge `stable_age` seconds); waits until its
    /// REST API answers.
    pub fn start(plugins: &[&Path], stable_age: u32, extra: Value) -> Orthanc {
        assert!(
            Path::new(ORTHANC).exists(),
            "{ORTHANC} is missing: run `make setup` (Debian package orthanc)"
        );
        let temporary = tempfile::tempdir().expect("temporary folder");
        let dir = temporary.path().to_path_buf();
        let (http, dicom) = free_ports();
        let storage = dir.join("storage");
        let mut config = serde_json::json!({
            "Name": "DICOM-XAI-TEST",
            "StorageDirectory": storage,
            "IndexDirectory": storage,
            "HttpPort": http,
            "DicomPort": dicom,
            "DicomAet": "XAITEST",
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false,
            "StableAge": stable_age,
            "Plugins": plugins,
            "WebViewer": { "CachePath": dir.join("webviewer-cache") },
            "DicomWeb": { "Enable": true, "Root": "/dicom-web/" },
        });
        if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
            for (key, value) in extra {
                config.insert(key.clone(), value.clone());
            }
        }
        let config_path = dir.join("orthanc.json");
        std::fs::write(&config_path, config.to_string()).expect("configuration");
        let log = dir.join("orthanc.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(ORTHANC)
            .arg("--verbose")
            .arg(&config_path)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .expect("cannot start Orthanc");
        let mut orthanc = Orthanc {
            child: Some(child),
            http,
            dicom,
            dir,
            log,
            _temporary: temporary,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = orthanc.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("Orthanc exited ({status}) at start:\n{}", orthanc.log());
            }
            if orthanc
                .try_request("GET", "/system", &[])
                .is_ok_and(|a| a.status == 200)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "Orthanc did not answer within 30 s:\n{}",
                orthanc.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        orthanc
    }

    /// Its base URL.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("running")
    }

    /// One HTTP/1.1 request (`Connection: close`).
    pub fn try_request(&self, method: &str, path: &str, body: &[u8]) -> std::io::Result<Answer> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.http))?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        parse_answer(&raw)
            .ok_or_else(|| std::io::Error::other(format!("bad HTTP answer to {method} {path}")))
    }

    /// A request that must get an answer.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> Answer {
        self.try_request(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log()))
    }

    /// GET that must answer 200 with JSON.
    pub fn json(&self, path: &str) -> Value {
        let answer = self.request("GET", path, &[]);
        assert_eq!(
            answer.status,
            200,
            "GET {path}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        answer.json()
    }

    /// GET that must answer 200; the body.
    pub fn bytes(&self, path: &str) -> Vec<u8> {
        let answer = self.request("GET", path, &[]);
        assert_eq!(answer.status, 200, "GET {path}");
        answer.body
    }

    /// Stores one DICOM file with `POST /instances`; Orthanc's answer.
    pub fn store(&self, file: &Path) -> Value {
        self.try_store(file)
            .unwrap_or_else(|status| panic!("POST /instances {}: {status}", file.display()))
    }

    /// Offers one DICOM file with `POST /instances`: Orthanc's answer when it took it,
    /// else the HTTP status of its refusal.
    pub fn try_store(&self, file: &Path) -> Result<Value, u16> {
        let bytes = std::fs::read(file).expect("readable");
        let answer = self.request("POST", "/instances", &bytes);
        if answer.status == 200 {
            Ok(answer.json())
        } else {
            Err(answer.status)
        }
    }

    /// Sends SIGTERM and waits up to `limit` for Orthanc to exit: its status, how long it
    /// took, and its log.
    pub fn stop(mut self, limit: Duration) -> (ExitStatus, Duration, String) {
        let mut child = self.child.take().expect("running");
        let started = Instant::now();
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("cannot run kill");
        assert!(sent.success(), "kill -TERM {} failed", child.id());
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return (status, started.elapsed(), self.log());
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "Orthanc did not stop within {limit:?} of SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Status and body of a raw HTTP/1.1 answer (Content-Length or chunked).
fn parse_answer(raw: &[u8]) -> Option<Answer> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let body = &raw[split + 4..];
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with("transfer-encoding:") && line.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Some(Answer { status, body })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// Runs headless Chromium on `url`, giving its scripts `budget_ms` of virtual time: the
/// DOM it ends with, and a screenshot written to `screenshot`.
pub fn chromium(url: &str, budget_ms: u32, screenshot: &Path) -> String {
    // a profile of its own: nothing written under $HOME, no lock shared with another run
    let profile = tempfile::tempdir().expect("temporary folder");
    let mut user_data = std::ffi::OsString::from("--user-data-dir=");
    user_data.push(profile.path());
    let run = |extra: &[&std::ffi::OsStr]| {
        let output = Command::new("chromium")
            .arg(&user_data)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--window-size=1280,800",
            ])
            .arg(format!("--virtual-time-budget={budget_ms}"))
            .args(extra)
            .arg(url)
            .output()
            .unwrap_or_else(|e| panic!("cannot run chromium ({e}): run `make setup`"));
        assert!(
            output.status.success(),
            "chromium {url} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    };
    let dom = run(&["--dump-dom".as_ref()]);
    let mut argument = std::ffi::OsString::from("--screenshot=");
    argument.push(screenshot);
    run(&[argument.as_os_str()]);
    assert!(screenshot.exists(), "chromium wrote no screenshot of {url}");
    String::from_utf8_lossy(&dom.stdout).into_owned()
}
