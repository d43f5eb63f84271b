//! `[watch]` and `[watch.pacs]`: the daemon.

use std::path::PathBuf;
use std::time::{Duration, TryFromFloatSecsError};

use snafu::{ResultExt, Snafu};

use super::Validator;
use crate::config::raw::{RawPacs, RawWatch};
use crate::config::rules::Rule;
use crate::config::settings::{AfterProcessing, Destination, PacsSettings, WatchSettings};

impl Validator<'_> {
    pub(super) fn watch(&mut self, raw: &RawWatch, rules: &[Rule]) -> WatchSettings {
        let drop = self.folder("watch.drop", raw.drop.as_deref(), "drop");
        let state = self.folder("watch.state", raw.state.as_deref(), "state");
        let poll = match raw.poll.as_deref() {
            None | Some("off") => None,
            Some(text) => Some(self.duration("watch.poll", Some(text), Duration::from_secs(5))),
        };
        let stable = self.duration(
            "watch.stable",
            raw.stable.as_deref(),
            Duration::from_secs(2),
        );
        let settle = self.duration(
            "watch.settle",
            raw.settle.as_deref(),
            Duration::from_secs(30),
        );
        let force_after = self.duration(
            "watch.force_after",
            raw.force_after.as_deref(),
            Duration::from_secs(600),
        );
        if force_after < settle {
            self.bad(
                "watch.force_after",
                None,
                "must be at least watch.settle (it limits how long a study may keep settling)",
            );
        }
        let rescan = self.duration(
            "watch.rescan",
            raw.rescan.as_deref(),
            Duration::from_secs(600),
        );
        let ignore = raw.ignore.clone().unwrap_or_else(|| {
            [".*", "*.part", "*.tmp", "*.partial", "*~"]
                .map(String::from)
                .to_vec()
        });
        let required_rules = raw.required_rules.clone().unwrap_or_default();
        for (i, name) in required_rules.iter().enumerate() {
            if !rules.iter().any(|r| &r.name == name) {
                self.bad(
                    &format!("watch.required_rules[{i}]"),
                    Some(format!("{name:?}")),
                    format!(
                        "no rule has this name (rules: {})",
                        rules
                            .iter()
                            .map(|r| r.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
        let mut deliver = Vec::new();
        for (i, name) in raw
            .deliver
            .clone()
            .unwrap_or_else(|| vec!["out".to_string()])
            .iter()
            .enumerate()
        {
            let destination = match name.as_str() {
                "out" => Destination::Out,
                "study-folder" => Destination::StudyFolder,
                "pacs" => Destination::Pacs,
                _ => {
                    self.bad(
                        &format!("watch.deliver[{i}]"),
                        Some(format!("{name:?}")),
                        "must be \"out\", \"study-folder\" or \"pacs\"",
                    );
                    continue;
                }
            };
            if !deliver.contains(&destination) {
                deliver.push(destination);
            }
        }
        let pacs = raw.pacs.as_ref().and_then(|raw| self.pacs(raw));
        if deliver.contains(&Destination::Pacs) && pacs.is_none() && raw.pacs.is_none() {
            self.bad(
                "watch.deliver",
                None,
                "\"pacs\" needs a [watch.pacs] section with peer = \"AE@host:port\"",
            );
        }
        let after = match raw.after.as_deref() {
            None | Some("keep") => AfterProcessing::Keep,
            Some("delete") => AfterProcessing::Delete,
            Some("move") => match raw.archive.as_deref() {
                Some(dir) if !dir.trim().is_empty() => AfterProcessing::Move(PathBuf::from(dir)),
                _ => {
                    self.bad(
                        "watch.archive",
                        None,
                        "after = \"move\" needs archive = \"<folder>\"",
                    );
                    AfterProcessing::Keep
                }
            },
            Some(other) => {
                self.bad(
                    "watch.after",
                    Some(format!("{other:?}")),
                    "must be \"keep\", \"move\" or \"delete\"",
                );
                AfterProcessing::Keep
            }
        };
        let workers = self.count("watch.workers", raw.workers, 1, 1);
        let max_attempts = self.integer("watch.max_attempts", raw.max_attempts, 3, 1, 100) as u32;
        let retry_after = self.duration(
            "watch.retry_after",
            raw.retry_after.as_deref(),
            Duration::from_secs(30),
        );
        let metrics = raw.metrics.as_deref().and_then(|text| {
            match text.parse::<std::net::SocketAddr>() {
                Ok(address) if address.ip().is_loopback() => Some(address),
                Ok(_) => {
                    self.bad(
                        "watch.metrics",
                        Some(format!("{text:?}")),
                        "the metrics endpoint listens on the loopback address only (127.0.0.1:PORT)",
                    );
                    None
                }
                Err(_) => {
                    self.bad(
                        "watch.metrics",
                        Some(format!("{text:?}")),
                        "not an address such as \"127.0.0.1:9464\"",
                    );
                    None
                }
            }
        });
        WatchSettings {
            drop,
            state,
            poll,
            stable,
            settle,
            force_after,
            rescan,
            ignore,
            required_rules,
            deliver,
            pacs,
            after,
            workers,
            max_attempts,
            retry_after,
            metrics,
        }
    }

    pub(super) fn pacs(&mut self, raw: &RawPacs) -> Option<PacsSettings> {
        let Some(peer) = raw.peer.as_deref() else {
            self.bad("watch.pacs.peer", None, "missing: peer = \"AE@host:port\"");
            return None;
        };
        let parsed = peer.split_once('@').and_then(|(ae, address)| {
            let (host, port) = address.rsplit_once(':')?;
            let port: u16 = port.parse().ok()?;
            (!ae.is_empty() && ae.len() <= 16 && !host.is_empty() && port > 0)
                .then(|| (ae.to_string(), host.to_string(), port))
        });
        let Some((called_ae, host, port)) = parsed else {
            self.bad(
                "watch.pacs.peer",
                Some(format!("{peer:?}")),
                "must be \"AE@host:port\" (AE title of at most 16 characters)",
            );
            return None;
        };
        let calling_ae = raw
            .calling_ae
            .clone()
            .unwrap_or_else(|| "DICOM-XAI".to_string());
        if calling_ae.is_empty() || calling_ae.len() > 16 {
            self.bad(
                "watch.pacs.calling_ae",
                Some(format!("{calling_ae:?}")),
                "an AE title has 1 to 16 characters",
            );
        }
        Some(PacsSettings {
            called_ae,
            host,
            port,
            calling_ae,
            timeout: self.duration(
                "watch.pacs.timeout",
                raw.timeout.as_deref(),
                Duration::from_secs(30),
            ),
            max_attempts: self.integer("watch.pacs.max_attempts", raw.max_attempts, 5, 1, 1000)
                as u32,
        })
    }
}

/// Why a text is not a duration ([`parse_duration`]); each message quotes the text.
#[derive(Debug, Clone, PartialEq, Eq, Snafu)]
#[non_exhaustive]
pub enum DurationError {
    /// No number at the start.
    #[snafu(display("{text:?} is not a duration such as \"500ms\", \"30s\", \"5m\", \"2h\""))]
    NotADuration {
        /// The text, trimmed.
        text: String,
    },
    /// The unit is none of ms, s, m (min), h.
    #[snafu(display("unknown unit {unit:?} in {text:?}: use ms, s, m or h"))]
    UnknownUnit {
        /// The unit as written.
        unit: String,
        /// The text, trimmed.
        text: String,
    },
    /// The number is too large for a duration.
    #[snafu(display("{text:?}: {source}"))]
    OutOfRange {
        /// The text, trimmed.
        text: String,
        /// Why the seconds make no duration.
        source: TryFromFloatSecsError,
    },
}

/// Parses a duration written as a number and a unit: `500ms`, `30s`, `5m`, `2h`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| NotADurationSnafu { text }.build())?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return UnknownUnitSnafu { unit: other, text }.fail(),
    };
    Duration::try_from_secs_f64(seconds).context(OutOfRangeSnafu { text })
}
