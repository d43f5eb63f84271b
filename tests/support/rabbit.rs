//! A real RabbitMQ for the work-queue tests and the bench (Debian's `rabbitmq-server`, run as
//! this user): a node of its own (unique name, free loopback ports for AMQP and Erlang
//! distribution, an Erlang port mapper (epmd) of its own on a free port, a temporary database
//! and log folder, no plugins), stopped with its epmd when dropped.
#![allow(dead_code)] // the tests and the bench use different subsets

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dicom_xai::queue::Broker;

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A RabbitMQ node of this test; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Rabbit {
    dir: PathBuf,
    port: u16,
    dist_port: u16,
    epmd_port: u16,
    node: String,
    child: Option<Child>,
}

impl Rabbit {
    /// Starts a node with its files under `work/rabbit`.
    pub fn start(work: &Path) -> Rabbit {
        let dir = work.join("rabbit");
        std::fs::create_dir_all(&dir).expect("broker folder");
        std::fs::write(dir.join("enabled_plugins"), "[].\n").expect("plugins file");
        std::fs::write(dir.join("rabbitmq-env.conf"), "").expect("env file");
        let mut rabbit = Rabbit {
            node: format!(
                "dicom-xai-test-{}-{}@localhost",
                std::process::id(),
                free_port()
            ),
            port: free_port(),
            dist_port: free_port(),
            epmd_port: free_port(),
            dir,
            child: None,
        };
        rabbit.launch();
        rabbit
    }

    /// Starts the node (again, on the same database and ports) and waits until it takes
    /// connections.
    pub fn launch(&mut self) {
        let sbin = std::fs::read_dir("/usr/lib/rabbitmq/lib")
            .expect("rabbitmq-server is installed (make setup)")
            .filter_map(Result::ok)
            .map(|e| e.path().join("sbin/rabbitmq-server"))
            .find(|p| p.exists())
            .expect("rabbitmq-server");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .expect("log");
        let child = Command::new(sbin)
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            // the VM starts an epmd on this port if none runs there: ours, stopped on drop
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", self.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.dir.join("log"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                self.dir.join("enabled_plugins"),
            )
            .env("RABBITMQ_PID_FILE", self.dir.join("pid"))
            // nothing of the machine's own broker set-up: its env file, configuration,
            // and the Erlang cookie in the real home folder
            .env("RABBITMQ_CONF_ENV_FILE", self.dir.join("rabbitmq-env.conf"))
            .env("RABBITMQ_CONFIG_FILE", self.dir.join("rabbitmq"))
            .env("HOME", &self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start rabbitmq-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(broker) = Broker::connect(&self.url()) {
                broker.close();
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the broker did not start:\n{}",
                std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The port of the node's own Erlang port mapper.
    pub fn epmd_port(&self) -> u16 {
        self.epmd_port
    }

    /// The AMQP URL of the default virtual host.
    pub fn url(&self) -> String {
        format!("amqp://127.0.0.1:{}/%2f", self.port)
    }

    /// Stops the node: SIGTERM to the Erlang VM (a clean shutdown; its pid from the pid file,
    /// else the child of the start script), SIGKILL after 30 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let mut pid = std::fs::read_to_string(self.dir.join("pid"))
            .unwrap_or_default()
            .trim()
            .to_string();
        if pid.is_empty() {
            let children = Command::new("pgrep")
                .args(["-P", &child.id().to_string()])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default();
            pid = children.lines().next().unwrap_or_default().to_string();
        }
        if !pid.is_empty() {
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                // reap the start script as soon as the VM is gone
                let _ = child.try_wait();
                std::thread::sleep(Duration::from_millis(100));
            }
            if Path::new(&format!("/proc/{pid}")).exists() {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
            }
        }
        let _ = std::fs::remove_file(self.dir.join("pid"));
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Rabbit {
    /// Stops the node, then its epmd (which outlives a node by design).
    fn drop(&mut self) {
        self.stop();
        let _ = Command::new("epmd")
            .args(["-port", &self.epmd_port.to_string(), "-kill"])
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
