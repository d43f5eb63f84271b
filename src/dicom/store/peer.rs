//! The peer to send to: [`StorePeer`], parsed from `AE@host:port`.

use std::fmt;
use std::time::Duration;

use snafu::{OptionExt, Snafu};

/// Where to send: a DICOM peer (an AE title at a TCP address) and how we call ourselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorePeer {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The peer's AE title (Called AE Title).
    pub called_ae: String,
    /// Our AE title (Calling AE Title).
    pub calling_ae: String,
    /// Limit for connecting and for each network read or write; zero means none.
    pub timeout: Duration,
}

/// Why a text is not a peer `AE@host:port`. Every message starts with the text (trimmed),
/// in backquotes.
#[derive(Debug, Clone, PartialEq, Eq, Snafu)]
#[non_exhaustive]
pub enum ParsePeerError {
    /// No `@` between the AE title and the address.
    #[snafu(display("`{input}`: expected AE@host:port (no `@`)"))]
    NoAt {
        /// The text, trimmed.
        input: String,
    },
    /// The part before `@` is not a valid AE title.
    #[snafu(display("`{input}`: AE title `{ae}` {problem}"))]
    AeTitle {
        /// The text, trimmed.
        input: String,
        /// The AE title as given.
        ae: String,
        /// What is wrong with it.
        problem: AeTitleError,
    },
    /// A bracketed (IPv6) host not followed by `]:port`.
    #[snafu(display("`{input}`: expected [IPv6 address]:port after `@`"))]
    BracketedNoPort {
        /// The text, trimmed.
        input: String,
    },
    /// No `:` between host and port.
    #[snafu(display("`{input}`: expected host:port after `@` (no port)"))]
    NoPort {
        /// The text, trimmed.
        input: String,
    },
    /// Nothing between `@` and the port.
    #[snafu(display("`{input}`: empty host"))]
    EmptyHost {
        /// The text, trimmed.
        input: String,
    },
    /// An IPv6 address without brackets: where its port starts would be ambiguous.
    #[snafu(display("`{input}`: an IPv6 address must be in brackets, as in AE@[::1]:104"))]
    UnbracketedIpv6 {
        /// The text, trimmed.
        input: String,
    },
    /// The port is not a 16-bit number.
    #[snafu(display("`{input}`: port `{port}` is not a number from 1 to 65535"))]
    BadPort {
        /// The text, trimmed.
        input: String,
        /// The port as given.
        port: String,
    },
    /// Port 0, which no peer listens on.
    #[snafu(display("`{input}`: port 0 is not a port one can connect to"))]
    PortZero {
        /// The text, trimmed.
        input: String,
    },
}

/// What is wrong with an AE title; the message completes "AE title `...` ".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Snafu)]
#[non_exhaustive]
pub enum AeTitleError {
    /// Empty or all spaces.
    #[snafu(display("is empty"))]
    Empty,
    /// More than 16 characters.
    #[snafu(display("is longer than 16 characters"))]
    TooLong,
    /// A character outside printable ASCII, or a backslash (the value separator).
    #[snafu(display("may only hold printable ASCII characters other than `\\`"))]
    BadCharacter,
}

impl StorePeer {
    /// The calling AE title [`StorePeer::parse`] gives.
    pub const DEFAULT_CALLING_AE: &'static str = "DICOM-XAI";
    /// The timeout [`StorePeer::parse`] gives.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    /// Parses `AE@host:port` (IPv6 hosts in brackets: `AE@[::1]:104`), with calling AE title
    /// [`DEFAULT_CALLING_AE`](Self::DEFAULT_CALLING_AE) and timeout
    /// [`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT). The error says what is wrong.
    pub fn parse(s: &str) -> Result<StorePeer, ParsePeerError> {
        let s = s.trim();
        let (ae, address) = s.split_once('@').context(NoAtSnafu { input: s })?;
        check_ae_title(ae).map_err(|problem| {
            AeTitleSnafu {
                input: s,
                ae,
                problem,
            }
            .build()
        })?;
        let (host, port) = if let Some(bracketed) = address.strip_prefix('[') {
            bracketed
                .split_once("]:")
                .context(BracketedNoPortSnafu { input: s })?
        } else {
            address.rsplit_once(':').context(NoPortSnafu { input: s })?
        };
        if host.is_empty() {
            return EmptyHostSnafu { input: s }.fail();
        }
        if host.contains(':') && !address.starts_with('[') {
            return UnbracketedIpv6Snafu { input: s }.fail();
        }
        let port: u16 = port
            .parse()
            .map_err(|_| BadPortSnafu { input: s, port }.build())?;
        if port == 0 {
            return PortZeroSnafu { input: s }.fail();
        }
        Ok(StorePeer {
            host: host.to_string(),
            port,
            called_ae: ae.to_string(),
            calling_ae: Self::DEFAULT_CALLING_AE.to_string(),
            timeout: Self::DEFAULT_TIMEOUT,
        })
    }
}

/// Checks an AE title: 1 to 16 characters of printable ASCII, not all spaces, no backslash.
fn check_ae_title(ae: &str) -> Result<(), AeTitleError> {
    if ae.trim().is_empty() {
        Err(AeTitleError::Empty)
    } else if ae.len() > 16 {
        Err(AeTitleError::TooLong)
    } else if !ae.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'\\') {
        Err(AeTitleError::BadCharacter)
    } else {
        Ok(())
    }
}

/// `AE@host:port`, with an IPv6 host in brackets.
impl fmt::Display for StorePeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}@[{}]:{}", self.called_ae, self.host, self.port)
        } else {
            write!(f, "{}@{}:{}", self.called_ae, self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_peers() {
        let peer = StorePeer::parse("PACS@pacs.example.org:11112").unwrap();
        assert_eq!(peer.called_ae, "PACS");
        assert_eq!(peer.host, "pacs.example.org");
        assert_eq!(peer.port, 11112);
        assert_eq!(peer.calling_ae, "DICOM-XAI");
        assert_eq!(peer.timeout, Duration::from_secs(30));
        assert_eq!(peer.to_string(), "PACS@pacs.example.org:11112");

        let v6 = StorePeer::parse("ORTHANC@[::1]:4242").unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.to_string(), "ORTHANC@[::1]:4242");

        for bad in [
            "pacs:104",
            "@host:104",
            "PACS@host",
            "PACS@:104",
            "PACS@host:0",
            "PACS@host:70000",
            "PACS@::1:104",
            "AN-AE-TITLE-TOO-LONG@host:104",
            "BACK\\SLASH@host:104",
        ] {
            let error = StorePeer::parse(bad).unwrap_err().to_string();
            assert!(error.contains(bad), "{bad}: {error}");
        }
    }

    #[test]
    fn parse_errors_keep_their_messages() {
        // the texts the former `Result<_, String>` gave, word for word
        let message = |s: &str| StorePeer::parse(s).unwrap_err().to_string();
        assert_eq!(
            message(" pacs:104 "),
            "`pacs:104`: expected AE@host:port (no `@`)"
        );
        assert_eq!(message("@host:104"), "`@host:104`: AE title `` is empty");
        assert_eq!(
            message("AN-AE-TITLE-TOO-LONG@host:104"),
            "`AN-AE-TITLE-TOO-LONG@host:104`: AE title `AN-AE-TITLE-TOO-LONG` is longer than \
             16 characters"
        );
        assert_eq!(
            message("BACK\\SLASH@host:104"),
            "`BACK\\SLASH@host:104`: AE title `BACK\\SLASH` may only hold printable ASCII \
             characters other than `\\`"
        );
        assert_eq!(
            message("PACS@[::1]104"),
            "`PACS@[::1]104`: expected [IPv6 address]:port after `@`"
        );
        assert_eq!(
            message("PACS@host"),
            "`PACS@host`: expected host:port after `@` (no port)"
        );
        assert_eq!(message("PACS@:104"), "`PACS@:104`: empty host");
        assert_eq!(
            message("PACS@::1:104"),
            "`PACS@::1:104`: an IPv6 address must be in brackets, as in AE@[::1]:104"
        );
        assert_eq!(
            message("PACS@host:70000"),
            "`PACS@host:70000`: port `70000` is not a number from 1 to 65535"
        );
        assert_eq!(
            message("PACS@host:0"),
            "`PACS@host:0`: port 0 is not a port one can connect to"
        );
        assert_eq!(
            StorePeer::parse("PACS@host:x"),
            Err(ParsePeerError::BadPort {
                input: "PACS@host:x".to_string(),
                port: "x".to_string(),
            })
        );
    }
}
