//! A DICOM receiver for the tests: dcmtk's `storescp` (or another dcmtk SCP) on a free
//! local port, killed when dropped, with the folder it writes what it receives to.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dicom_xai::dicom::store::StorePeer;

/// A receiver process, killed when dropped, with the folder it writes to.
pub struct Receiver {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    /// Where storescp writes what it receives.
    pub out: tempfile::TempDir,
    /// Its log and configuration.
    pub work: tempfile::TempDir,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    /// A peer addressing this receiver as `called_ae`.
    pub fn peer(&self, called_ae: &str) -> StorePeer {
        StorePeer {
            host: "127.0.0.1".to_string(),
            port: self.port,
            called_ae: called_ae.to_string(),
            calling_ae: "XAI-SCU".to_string(),
            timeout: Duration::from_secs(20),
        }
    }

    /// The files received so far.
    pub fn received(&self) -> Vec<PathBuf> {
        super::files_under(self.out.path())
    }

    /// The receiver's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.work.path().join("log.txt")).unwrap_or_default()
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// Starts `program` with the arguments `args(port, out, work)` on a free port and waits
/// until it accepts connections; retries on another port when it does not come up.
pub fn start(program: &str, args: impl Fn(u16, &Path, &Path) -> Vec<String>) -> Receiver {
    let mut last_log = String::new();
    for _ in 0..5 {
        let port = free_port();
        let out = tempfile::tempdir().expect("temporary folder");
        let work = tempfile::tempdir().expect("temporary folder");
        let log = std::fs::File::create(work.path().join("log.txt")).expect("log file");
        let child = Command::new(program)
            .args(args(port, out.path(), work.path()))
            .current_dir(work.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program} ({e}): install dcmtk"));
        let mut receiver = Receiver {
            child,
            port,
            out,
            work,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(receiver.child.try_wait(), Ok(Some(_))) {
                break; // exited: port taken, most likely
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return receiver;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        last_log = receiver.log();
        let _ = receiver.child.kill();
    }
    panic!("{program} did not come up on any of 5 ports; last log:\n{last_log}");
}

/// storescp with AE title XAI-TEST writing to its `out` folder, plus `extra` options.
pub fn storescp(extra: &[&str]) -> Receiver {
    start("storescp", |port, out, _| {
        let mut args: Vec<String> = vec![
            "-v".into(),
            "--output-directory".into(),
            out.display().to_string(),
            "-aet".into(),
            "XAI-TEST".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(port.to_string());
        args
    })
}
