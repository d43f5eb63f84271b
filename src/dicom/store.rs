//! Sending DICOM files to a peer (a PACS, a router) by C-STORE: the storage service class
//! user (SCU) the watcher uses to push the Secondary Capture overlays it writes.
//!
//! [`store_files`] opens ONE association with the peer for a whole batch of files and sends
//! them in order, one C-STORE request each, and returns one result per file.
//!
//! # Presentation contexts
//!
//! Every file is read once before the association is requested, to learn its SOP Class UID
//! and transfer syntax. For each distinct pair the association request proposes a context
//! with the SOP class and that transfer syntax alone, and for each SOP class a context with
//! Explicit VR Little Endian and Implicit VR Little Endian (in that order). A file is then
//! sent over:
//!
//! 1. the accepted context with its SOP class and its own transfer syntax, when there is one:
//!    the data set bytes go out exactly as they are in the file (nothing is decoded or
//!    converted);
//! 2. otherwise, if the file is native (uncompressed pixel data), the accepted context with
//!    its SOP class in Explicit VR Little Endian, or failing that Implicit VR Little Endian:
//!    the data set is re-encoded in that transfer syntax, values unchanged;
//! 3. otherwise the file fails with [`StoreError::NoPresentationContext`]: compressed data is
//!    never decompressed or recompressed.
//!
//! One association holds at most 128 presentation contexts; files whose SOP class and
//! transfer syntax do not fit fail with [`StoreError::TooManyContexts`].
//!
//! # What counts as success
//!
//! A file succeeds when the peer answers its C-STORE-RQ with status 0x0000 (success) or one
//! of the storage warnings 0xB000 (coercion of data elements), 0xB006 (elements discarded)
//! and 0xB007 (data set does not match SOP class), which are logged with `tracing::warn!`.
//! Any other status fails that file ([`StoreError::Refused`], status in hex) and the next file
//! is sent over the same association.
//!
//! # Failures
//!
//! A file that cannot be read fails alone. A connection or association failure (refused
//! connection, rejected association, no accepted presentation context at all) fails every
//! file with the same error. When the link breaks mid-transfer (the peer disappears, aborts,
//! times out or breaks the protocol), the file being sent fails with
//! [`StoreError::Transfer`], the association is aborted, and the files after it fail with
//! [`StoreError::NotSent`]. After the last file the association is released (a failed release
//! is only logged: the peer has already confirmed every stored file).

use std::fmt;
use std::io::{Cursor, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dicom_dictionary_std::{tags, uids};
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::association::Error as UlError;
use dicom_ul::pdu::{AbortRQSource, PDataValue, PDataValueType, PresentationContextNegotiated};
use dicom_ul::{ClientAssociation, ClientAssociationOptions, Pdu};
use snafu::{ResultExt, Snafu};

use super::attrs;
use super::file::{self, Depth, DicomFile, Layout, ReadError};

/// The most presentation contexts one association can propose (odd IDs 1 to 255).
const MAX_PRESENTATION_CONTEXTS: usize = 128;

/// C-STORE-RQ command field.
const C_STORE_RQ: u16 = 0x0001;
/// C-STORE-RSP command field.
const C_STORE_RSP: u16 = 0x8001;
/// Priority MEDIUM.
const PRIORITY_MEDIUM: u16 = 0x0000;
/// Command Data Set Type: a data set follows the command (any value but 0x0101).
const DATA_SET_PRESENT: u16 = 0x0000;
/// Storage warnings that still mean the instance was stored (PS3.4 B.2.3).
const WARNING_STATUSES: [u16; 3] = [0xB000, 0xB006, 0xB007];

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

impl StorePeer {
    /// The calling AE title [`StorePeer::parse`] gives.
    pub const DEFAULT_CALLING_AE: &'static str = "DICOM-XAI";
    /// The timeout [`StorePeer::parse`] gives.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    /// Parses `AE@host:port` (IPv6 hosts in brackets: `AE@[::1]:104`), with calling AE title
    /// [`DEFAULT_CALLING_AE`](Self::DEFAULT_CALLING_AE) and timeout
    /// [`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT). The error says what is wrong.
    pub fn parse(s: &str) -> Result<StorePeer, String> {
        let s = s.trim();
        let (ae, address) = s
            .split_once('@')
            .ok_or_else(|| format!("`{s}`: expected AE@host:port (no `@`)"))?;
        check_ae_title(ae).map_err(|why| format!("`{s}`: AE title `{ae}` {why}"))?;
        let (host, port) = if let Some(bracketed) = address.strip_prefix('[') {
            bracketed
                .split_once("]:")
                .ok_or_else(|| format!("`{s}`: expected [IPv6 address]:port after `@`"))?
        } else {
            address
                .rsplit_once(':')
                .ok_or_else(|| format!("`{s}`: expected host:port after `@` (no port)"))?
        };
        if host.is_empty() {
            return Err(format!("`{s}`: empty host"));
        }
        if host.contains(':') && !address.starts_with('[') {
            return Err(format!(
                "`{s}`: an IPv6 address must be in brackets, as in AE@[::1]:104"
            ));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{s}`: port `{port}` is not a number from 1 to 65535"))?;
        if port == 0 {
            return Err(format!("`{s}`: port 0 is not a port one can connect to"));
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
fn check_ae_title(ae: &str) -> Result<(), &'static str> {
    if ae.trim().is_empty() {
        Err("is empty")
    } else if ae.len() > 16 {
        Err("is longer than 16 characters")
    } else if !ae.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'\\') {
        Err("may only hold printable ASCII characters other than `\\`")
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

/// Why one file was not stored. Every message names the file and the peer (`AE@host:port`),
/// and the SOP Instance UID when it is known.
#[derive(Debug, Snafu)]
#[non_exhaustive]
pub enum StoreError {
    /// The file could not be read as DICOM (its message starts with the path).
    #[snafu(display("{source} (not sent to {peer})"))]
    Unreadable {
        /// The peer, `AE@host:port`.
        peer: String,
        /// Why reading failed.
        source: ReadError,
    },
    /// The file lacks an attribute a C-STORE needs.
    #[snafu(display("{}: not sent to {peer}: the file has no {attribute}", path.display()))]
    MissingUid {
        /// The file.
        path: PathBuf,
        /// The peer, `AE@host:port`.
        peer: String,
        /// The missing attribute (SOP Class UID or SOP Instance UID).
        attribute: &'static str,
    },
    /// No TCP connection to the peer: refused, unreachable, unknown host, timed out.
    #[snafu(display("{}: not sent: cannot connect to {peer}: {source}", path.display()))]
    Connect {
        /// The file.
        path: PathBuf,
        /// The peer, `AE@host:port`.
        peer: String,
        /// The connection error, shared by every file of the batch.
        source: Arc<std::io::Error>,
    },
    /// The peer rejected the association (wrong AE titles, too busy, ...).
    #[snafu(display("{}: not sent: {peer} rejected the association: {reason}", path.display()))]
    Rejected {
        /// The file.
        path: PathBuf,
        /// The peer, `AE@host:port`.
        peer: String,
        /// The reason the peer gave, and whether the rejection is permanent or transient.
        reason: String,
    },
    /// The association could not be negotiated for another reason (protocol error, abort,
    /// time-out while waiting for the answer).
    #[snafu(display(
        "{}: not sent: association with {peer} failed: {}",
        path.display(),
        chain(source.as_ref())
    ))]
    Association {
        /// The file.
        path: PathBuf,
        /// The peer, `AE@host:port`.
        peer: String,
        /// What dicom-ul reported, shared by every file of the batch.
        source: Arc<UlError>,
    },
    /// The peer accepted no presentation context this file can be sent over.
    #[snafu(display(
        "{}: {sop_instance} not sent: {peer} accepted no presentation context for SOP class \
         {sop_class} in transfer syntax {transfer_syntax}{}",
        path.display(),
        if *native { " (nor in Explicit or Implicit VR Little Endian)" } else { "" }
    ))]
    NoPresentationContext {
        /// The file.
        path: PathBuf,
        /// The peer, `AE@host:port`.
        peer: String,
        /// The file's SOP Instance UID.
        sop_instance: String,
        /// The file's SOP Class UID.
        sop_class: String,
        /// The file's transfer syntax UID.
        transfer_syntax: String,
        /// Whether the file is native, so that Explicit/Implicit VR Little Endian would have
        /// done.
        native: bool,
    },
    /// The batch needs more presentation contexts than one association holds.
    #[snafu(display(
        "{}: {sop_instance} not sent to {peer}: SOP class {sop_class} in transfer syntax \
         {transfer_syntax} does not fit in the association (at most 128 presentation \
         contexts); send fewer kinds of files at once",
        path.display()
    ))]
    TooManyContexts {
        /// The file.
        path: PathBuf,
        /// The peer, `AE@host:port`.
        peer: String,
        /// The file's SOP Instance UID.
        sop_instance: String,
        /// The file's SOP Class UID.
        sop_class: String,
        /// The file's transfer syntax UID.
        transfer_syntax: String,
    },
    /// A native file could not be re-encoded in the transfer syntax the peer accepted.
    #[snafu(display(
        "{}: {sop_instance} not sent to {peer}: cannot re-encode in transfer syntax \
         {transfer_syntax}: {source}",
        path.display()
    ))]
    Encode {
        /// The file.
        path: PathBuf,
        /// The peer, `AE@host:port`.
        peer: String,
        /// The file's SOP Instance UID.
        sop_instance: String,
        /// The transfer syntax the peer accepted.
        transfer_syntax: String,
        /// What the encoder reported.
        #[snafu(source(from(dicom_object::WriteError, Box::new)))]
        source: Box<dicom_object::WriteError>,
    },
    /// The peer answered the C-STORE with a failure status.
    #[snafu(display(
        "{}: {peer} refused {sop_instance}: status 0x{status:04X}{}",
        path.display(),
        comment.as_ref().map(|c| format!(" ({c})")).unwrap_or_default()
    ))]
    Refused {
        /// The file.
        path: PathBuf,
        /// The peer, `AE@host:port`.
        peer: String,
        /// The file's SOP Instance UID.
        sop_instance: String,
        /// The C-STORE-RSP status.
        status: u16,
        /// The peer's Error Comment, when it gave one.
        comment: Option<String>,
    },
    /// The link broke while this file was being sent or its answer awaited.
    #[snafu(display(
        "{}: sending {sop_instance} to {peer} failed: {source}",
        path.display()
    ))]
    Transfer {
        /// The file.
        path: PathBuf,
        /// The peer, `AE@host:port`.
        peer: String,
        /// The file's SOP Instance UID.
        sop_instance: String,
        /// What broke.
        source: Arc<LinkError>,
    },
    /// Not sent because the association broke on an earlier file of the batch.
    #[snafu(display(
        "{}: not sent: the association with {peer} broke while sending {}: {source}",
        path.display(),
        after.display()
    ))]
    NotSent {
        /// The file.
        path: PathBuf,
        /// The peer, `AE@host:port`.
        peer: String,
        /// The file being sent when the association broke.
        after: PathBuf,
        /// What broke.
        source: Arc<LinkError>,
    },
}

/// What broke on an established association.
#[derive(Debug, Snafu)]
#[non_exhaustive]
pub enum LinkError {
    /// A PDU could not be sent.
    #[snafu(display("cannot send: {}", chain(source)))]
    Send {
        /// What dicom-ul reported.
        source: UlError,
    },
    /// The data set fragments could not be written to the socket.
    #[snafu(display("cannot send the data set: {source}"))]
    Write {
        /// The I/O error (broken pipe, connection reset, time-out).
        source: std::io::Error,
    },
    /// No answer could be read.
    #[snafu(display("no answer: {}", chain(source)))]
    Receive {
        /// What dicom-ul reported.
        source: UlError,
    },
    /// The peer aborted the association.
    #[snafu(display("the peer aborted the association ({reason})"))]
    Aborted {
        /// The abort source and reason, as received.
        reason: String,
    },
    /// The peer sent a PDU that has no place here.
    #[snafu(display("unexpected {pdu} from the peer"))]
    UnexpectedPdu {
        /// A short description of the PDU.
        pdu: String,
    },
    /// The answer was not a well-formed C-STORE-RSP to our request.
    #[snafu(display("malformed C-STORE-RSP: {detail}"))]
    BadResponse {
        /// What is wrong with it.
        detail: String,
    },
}

/// An error and its sources, joined by ": ", skipping a source whose text the message
/// already holds.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

/// What a file is, as far as negotiation goes.
struct Header {
    sop_class: String,
    sop_instance: String,
    transfer_syntax: String,
}

/// UIDs as compared: without the trailing NUL or space padding.
fn trim_uid(uid: &str) -> &str {
    uid.trim_matches(|c: char| c == '\0' || c == ' ')
}

/// The SOP class, SOP instance and transfer syntax of a parsed file.
fn header(file: &DicomFile, peer: &str) -> Result<Header, StoreError> {
    let meta = file.object.meta();
    let sop_class = attrs::string(file.dataset(), tags::SOP_CLASS_UID)
        .or_else(|| Some(trim_uid(meta.media_storage_sop_class_uid()).to_string()))
        .filter(|s| !s.is_empty());
    let sop_instance = file
        .sop_instance_uid()
        .or_else(|| Some(trim_uid(meta.media_storage_sop_instance_uid()).to_string()))
        .filter(|s| !s.is_empty());
    let missing = |attribute| StoreError::MissingUid {
        path: file.path.clone(),
        peer: peer.to_string(),
        attribute,
    };
    Ok(Header {
        sop_class: sop_class.ok_or_else(|| missing("SOP Class UID"))?,
        sop_instance: sop_instance.ok_or_else(|| missing("SOP Instance UID"))?,
        transfer_syntax: trim_uid(file.transfer_syntax()).to_string(),
    })
}

/// Reads a file's header: what to negotiate for it.
fn read_header(path: &Path, peer: &str) -> Result<Header, StoreError> {
    let file = file::open(path, Depth::Header).context(UnreadableSnafu { peer })?;
    header(&file, peer)
}

/// Whether the pixel data of a transfer syntax is native (not encapsulated), so that the
/// data set can be re-encoded in Explicit or Implicit VR Little Endian without touching it.
fn is_native(transfer_syntax: &str) -> bool {
    TransferSyntaxRegistry
        .get(transfer_syntax)
        .is_some_and(|ts| !ts.is_encapsulated_pixel_data() && !ts.is_unsupported())
}

/// The contexts to propose: (SOP class, transfer syntaxes), in proposal order.
#[derive(Default)]
struct Proposal {
    contexts: Vec<(String, Vec<String>)>,
}

impl Proposal {
    fn fallback() -> Vec<String> {
        vec![
            uids::EXPLICIT_VR_LITTLE_ENDIAN.to_string(),
            uids::IMPLICIT_VR_LITTLE_ENDIAN.to_string(),
        ]
    }

    fn contains(&self, sop_class: &str, syntaxes: &[String]) -> bool {
        self.contexts
            .iter()
            .any(|(class, ts)| class == sop_class && ts == syntaxes)
    }

    /// Adds the contexts a file needs while there is room; whether the file is covered.
    fn add(&mut self, header: &Header) -> bool {
        let own = vec![header.transfer_syntax.clone()];
        let fallback = Self::fallback();
        for syntaxes in [own.clone(), fallback.clone()] {
            if !self.contains(&header.sop_class, &syntaxes)
                && self.contexts.len() < MAX_PRESENTATION_CONTEXTS
            {
                self.contexts.push((header.sop_class.clone(), syntaxes));
            }
        }
        self.contains(&header.sop_class, &own)
            || (is_native(&header.transfer_syntax) && self.contains(&header.sop_class, &fallback))
    }
}

/// Why the association could not be established: what every file then fails with.
enum Unestablished {
    Connect(Arc<std::io::Error>),
    Rejected(String),
    NoContexts,
    Other(Arc<UlError>),
}

impl Unestablished {
    fn from_ul(error: UlError) -> Self {
        match error {
            UlError::Connect { source, .. }
            | UlError::ToAddress { source, .. }
            | UlError::SetReadTimeout { source, .. }
            | UlError::SetWriteTimeout { source, .. } => Self::Connect(Arc::new(source)),
            UlError::Rejected { association_rj, .. } => {
                let permanence = match association_rj.result {
                    dicom_ul::pdu::AssociationRJResult::Permanent => "permanent",
                    dicom_ul::pdu::AssociationRJResult::Transient => "transient",
                };
                Self::Rejected(format!("{} ({permanence})", association_rj.source))
            }
            UlError::NoAcceptedPresentationContexts { .. } => Self::NoContexts,
            other => Self::Other(Arc::new(other)),
        }
    }

    fn error_for(&self, path: &Path, header: &Header, peer: &str) -> StoreError {
        let path = path.to_path_buf();
        let peer = peer.to_string();
        match self {
            Self::Connect(source) => StoreError::Connect {
                path,
                peer,
                source: Arc::clone(source),
            },
            Self::Rejected(reason) => StoreError::Rejected {
                path,
                peer,
                reason: reason.clone(),
            },
            Self::NoContexts => StoreError::NoPresentationContext {
                path,
                peer,
                sop_instance: header.sop_instance.clone(),
                sop_class: header.sop_class.clone(),
                transfer_syntax: header.transfer_syntax.clone(),
                native: is_native(&header.transfer_syntax),
            },
            Self::Other(source) => StoreError::Association {
                path,
                peer,
                source: Arc::clone(source),
            },
        }
    }
}

/// How one file's C-STORE ended when it did not succeed.
enum Failure {
    /// This file failed; the association is intact.
    File(Box<StoreError>),
    /// The link broke: this file failed and the association is unusable.
    Link(Arc<LinkError>, Box<StoreError>),
}

impl Failure {
    fn file(error: StoreError) -> Self {
        Self::File(Box::new(error))
    }
}

/// Sends each file over ONE association with `peer`, in order, and returns one result per
/// file, in the same order.
///
/// The association proposes, for each file, its SOP class with its own transfer syntax and
/// with Explicit and Implicit VR Little Endian; nothing is converted, except that a native
/// (uncompressed) file whose own transfer syntax is not accepted is re-encoded in the
/// accepted Explicit or Implicit VR Little Endian (see the [module documentation](self)).
/// A connection or association failure fails every file with the same error; a file that
/// cannot be read, or that the peer refuses, fails alone.
pub fn store_files(peer: &StorePeer, files: &[PathBuf]) -> Vec<Result<(), StoreError>> {
    let peer_name = peer.to_string();

    // what to negotiate: every readable file's SOP class and transfer syntax
    let mut proposal = Proposal::default();
    let prepared: Vec<Result<Header, StoreError>> = files
        .iter()
        .map(|path| {
            let header = read_header(path, &peer_name)?;
            if proposal.add(&header) {
                Ok(header)
            } else {
                Err(StoreError::TooManyContexts {
                    path: path.clone(),
                    peer: peer_name.clone(),
                    sop_instance: header.sop_instance,
                    sop_class: header.sop_class,
                    transfer_syntax: header.transfer_syntax,
                })
            }
        })
        .collect();
    if prepared.iter().all(Result::is_err) {
        // nothing to send: no association
        return prepared.into_iter().map(|r| r.map(|_| ())).collect();
    }

    let mut association = match establish(peer, &proposal) {
        Ok(association) => association,
        Err(why) => {
            tracing::debug!("no association with {peer_name}");
            return prepared
                .into_iter()
                .zip(files)
                .map(|(prepared, path)| {
                    let header = prepared?;
                    Err(why.error_for(path, &header, &peer_name))
                })
                .collect();
        }
    };
    tracing::debug!(
        "association with {peer_name}: {} presentation context(s) accepted, max PDU {}",
        association.presentation_contexts().len(),
        association.acceptor_max_pdu_length()
    );

    let mut broken: Option<(Arc<LinkError>, PathBuf)> = None;
    let mut message_id: u16 = 0;
    let mut results = Vec::with_capacity(files.len());
    for (prepared, path) in prepared.into_iter().zip(files) {
        let result = match (prepared, &broken) {
            (Err(error), _) => Err(error),
            (Ok(_), Some((source, after))) => Err(StoreError::NotSent {
                path: path.clone(),
                peer: peer_name.clone(),
                after: after.clone(),
                source: Arc::clone(source),
            }),
            (Ok(_), None) => {
                message_id = message_id.checked_add(1).unwrap_or(1);
                match store_one(&mut association, path, &peer_name, message_id) {
                    Ok(()) => Ok(()),
                    Err(Failure::File(error)) => Err(*error),
                    Err(Failure::Link(source, error)) => {
                        broken = Some((source, path.clone()));
                        Err(*error)
                    }
                }
            }
        };
        results.push(result);
    }

    if broken.is_some() {
        if let Err(error) = association.abort() {
            tracing::debug!("aborting the association with {peer_name}: {error}");
        }
    } else if let Err(error) = association.release() {
        tracing::warn!(
            "releasing the association with {peer_name} failed: {}",
            chain(&error)
        );
    }
    results
}

/// Requests the association.
fn establish(
    peer: &StorePeer,
    proposal: &Proposal,
) -> Result<ClientAssociation<TcpStream>, Unestablished> {
    let mut options = ClientAssociationOptions::new()
        .calling_ae_title(peer.calling_ae.as_str())
        .called_ae_title(peer.called_ae.as_str());
    if !peer.timeout.is_zero() {
        options = options
            .connection_timeout(peer.timeout)
            .read_timeout(peer.timeout)
            .write_timeout(peer.timeout);
    }
    for (sop_class, syntaxes) in &proposal.contexts {
        options = options.with_presentation_context(
            sop_class.as_str(),
            syntaxes.iter().map(String::as_str).collect(),
        );
    }
    options
        .establish((peer.host.as_str(), peer.port))
        .map_err(Unestablished::from_ul)
}

/// The accepted context for a SOP class in one of the transfer syntaxes, the first found in
/// the order of `syntaxes`.
fn find_context<'a>(
    contexts: &'a [PresentationContextNegotiated],
    sop_class: &str,
    syntaxes: &[&str],
) -> Option<&'a PresentationContextNegotiated> {
    syntaxes.iter().find_map(|ts| {
        contexts.iter().find(|pc| {
            trim_uid(&pc.abstract_syntax) == sop_class && trim_uid(&pc.transfer_syntax) == *ts
        })
    })
}

/// Sends one file: reads it, picks its presentation context, sends the C-STORE-RQ and the
/// data set, checks the C-STORE-RSP.
fn store_one(
    association: &mut ClientAssociation<TcpStream>,
    path: &Path,
    peer: &str,
    message_id: u16,
) -> Result<(), Failure> {
    let bytes = std::fs::read(path)
        .map_err(|source| ReadError::Io {
            path: path.to_path_buf(),
            source,
        })
        .context(UnreadableSnafu { peer })
        .map_err(Failure::file)?;
    let file = file::parse(&bytes, path, Depth::Header)
        .context(UnreadableSnafu { peer })
        .map_err(Failure::file)?;
    let header = header(&file, peer).map_err(Failure::file)?;
    let contexts = association.presentation_contexts();

    let own = find_context(contexts, &header.sop_class, &[&header.transfer_syntax]);
    let (context_id, data): (u8, std::borrow::Cow<'_, [u8]>) =
        match own.and_then(|pc| data_set_bytes(&bytes, file.layout).map(|d| (pc.id, d))) {
            Some((id, data)) => (id, data.into()),
            None => {
                let target = if own.is_some() {
                    // the meta group could not be walked: re-encode in the file's own syntax
                    own
                } else if is_native(&header.transfer_syntax) {
                    find_context(
                        contexts,
                        &header.sop_class,
                        &[
                            uids::EXPLICIT_VR_LITTLE_ENDIAN,
                            uids::IMPLICIT_VR_LITTLE_ENDIAN,
                        ],
                    )
                } else {
                    None
                };
                let Some(pc) = target else {
                    return Err(Failure::file(StoreError::NoPresentationContext {
                        path: path.to_path_buf(),
                        peer: peer.to_string(),
                        native: is_native(&header.transfer_syntax),
                        sop_instance: header.sop_instance,
                        sop_class: header.sop_class,
                        transfer_syntax: header.transfer_syntax,
                    }));
                };
                let id = pc.id;
                let ts = trim_uid(&pc.transfer_syntax).to_string();
                let data = reencode(&bytes, path, peer, &header, &ts).map_err(Failure::file)?;
                tracing::debug!(
                    "{}: re-encoded from {} to {ts} for {peer}",
                    path.display(),
                    header.transfer_syntax
                );
                (id, data.into())
            }
        };

    let link_error = |source: LinkError| {
        let source = Arc::new(source);
        let error = StoreError::Transfer {
            path: path.to_path_buf(),
            peer: peer.to_string(),
            sop_instance: header.sop_instance.clone(),
            source: Arc::clone(&source),
        };
        Failure::Link(source, Box::new(error))
    };

    let command = c_store_rq(&header.sop_class, &header.sop_instance, message_id);
    send_message(association, context_id, &command, &data).map_err(link_error)?;
    let response = receive_command(association).map_err(link_error)?;
    let answer = parse_response(&response, message_id).map_err(link_error)?;

    match answer.status {
        0x0000 => {
            tracing::debug!(
                "{}: {} stored by {peer}",
                path.display(),
                header.sop_instance
            );
            Ok(())
        }
        status if WARNING_STATUSES.contains(&status) => {
            tracing::warn!(
                "{}: {peer} stored {} with warning status 0x{status:04X}{}",
                path.display(),
                header.sop_instance,
                answer
                    .comment
                    .as_ref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default()
            );
            Ok(())
        }
        status => Err(Failure::file(StoreError::Refused {
            path: path.to_path_buf(),
            peer: peer.to_string(),
            sop_instance: header.sop_instance,
            status,
            comment: answer.comment,
        })),
    }
}

/// The data set bytes of a file as they are on disk: everything after the file meta group.
/// `None` when the meta group cannot be walked.
fn data_set_bytes(bytes: &[u8], layout: Layout) -> Option<&[u8]> {
    let start = match layout {
        Layout::Part10 => meta_group_end(bytes, 132)?,
        Layout::Part10WithoutPreamble => meta_group_end(bytes, 4)?,
        Layout::BareDataSet => 0,
    };
    bytes.get(start..)
}

/// The offset just past the file meta group that starts at `start` (right after "DICM").
/// The group is explicit VR little endian; it is walked element by element, so that a
/// missing or wrong group length does not matter.
fn meta_group_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut pos = start;
    loop {
        if pos == bytes.len() {
            return Some(pos);
        }
        let head = bytes.get(pos..pos + 8)?;
        if u16::from_le_bytes([head[0], head[1]]) != 0x0002 {
            return Some(pos);
        }
        let vr = &head[4..6];
        let long = matches!(
            vr,
            b"OB"
                | b"OD"
                | b"OF"
                | b"OL"
                | b"OV"
                | b"OW"
                | b"SQ"
                | b"SV"
                | b"UC"
                | b"UN"
                | b"UR"
                | b"UT"
                | b"UV"
        );
        let (header_len, value_len) = if long {
            let len = bytes.get(pos + 8..pos + 12)?;
            let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]);
            if len == u32::MAX {
                return None; // undefined length has no place in the meta group
            }
            (12, usize::try_from(len).ok()?)
        } else {
            (8, usize::from(u16::from_le_bytes([head[6], head[7]])))
        };
        pos = pos.checked_add(header_len)?.checked_add(value_len)?;
        if pos > bytes.len() {
            return None;
        }
    }
}

/// Re-encodes the data set of a native file in transfer syntax `ts`.
fn reencode(
    bytes: &[u8],
    path: &Path,
    peer: &str,
    header: &Header,
    ts: &str,
) -> Result<Vec<u8>, StoreError> {
    let full = file::parse(bytes, path, Depth::Full).context(UnreadableSnafu { peer })?;
    let syntax = TransferSyntaxRegistry.get(ts).ok_or_else(|| {
        // cannot happen: only Explicit/Implicit VR Little Endian or the file's own syntax,
        // which parsed, get here
        StoreError::NoPresentationContext {
            path: path.to_path_buf(),
            peer: peer.to_string(),
            sop_instance: header.sop_instance.clone(),
            sop_class: header.sop_class.clone(),
            transfer_syntax: ts.to_string(),
            native: false,
        }
    })?;
    let mut out = Vec::with_capacity(bytes.len());
    full.object
        .write_dataset_with_ts(&mut out, syntax)
        .context(EncodeSnafu {
            path,
            peer,
            sop_instance: header.sop_instance.as_str(),
            transfer_syntax: ts,
        })?;
    Ok(out)
}

/// Appends one implicit VR little endian element.
fn put_element(out: &mut Vec<u8>, element: u16, value: &[u8]) {
    out.extend_from_slice(&0x0000u16.to_le_bytes());
    out.extend_from_slice(&element.to_le_bytes());
    // command values are short (UIDs of at most 64 characters, 16-bit integers)
    let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(value);
}

/// A UID value: NUL-padded to even length.
fn uid_value(uid: &str) -> Vec<u8> {
    let mut value = uid.as_bytes().to_vec();
    if value.len() % 2 == 1 {
        value.push(0);
    }
    value
}

/// The C-STORE-RQ command set, implicit VR little endian, Command Group Length first.
fn c_store_rq(sop_class: &str, sop_instance: &str, message_id: u16) -> Vec<u8> {
    let mut body = Vec::with_capacity(160);
    put_element(
        &mut body,
        tags::AFFECTED_SOP_CLASS_UID.1,
        &uid_value(sop_class),
    );
    put_element(&mut body, tags::COMMAND_FIELD.1, &C_STORE_RQ.to_le_bytes());
    put_element(&mut body, tags::MESSAGE_ID.1, &message_id.to_le_bytes());
    put_element(&mut body, tags::PRIORITY.1, &PRIORITY_MEDIUM.to_le_bytes());
    put_element(
        &mut body,
        tags::COMMAND_DATA_SET_TYPE.1,
        &DATA_SET_PRESENT.to_le_bytes(),
    );
    put_element(
        &mut body,
        tags::AFFECTED_SOP_INSTANCE_UID.1,
        &uid_value(sop_instance),
    );
    let group_length = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut command = Vec::with_capacity(body.len() + 12);
    put_element(
        &mut command,
        tags::COMMAND_GROUP_LENGTH.1,
        &group_length.to_le_bytes(),
    );
    command.extend_from_slice(&body);
    command
}

/// Sends the command (one PDV) then the data set, in as many P-DATA-TF PDUs as the peer's
/// maximum PDU length requires.
fn send_message(
    association: &mut ClientAssociation<TcpStream>,
    context_id: u8,
    command: &[u8],
    data: &[u8],
) -> Result<(), LinkError> {
    association
        .send(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: context_id,
                value_type: PDataValueType::Command,
                is_last: true,
                data: command.to_vec(),
            }],
        })
        .context(SendSnafu)?;
    let mut writer = association.send_pdata(context_id);
    writer.write_all(data).context(WriteSnafu)?;
    writer.finish().context(WriteSnafu)
}

/// Receives PDUs until a complete command set has arrived; returns its bytes.
fn receive_command(association: &mut ClientAssociation<TcpStream>) -> Result<Vec<u8>, LinkError> {
    let mut command = Vec::new();
    loop {
        match association.receive().context(ReceiveSnafu)? {
            Pdu::PData { data } => {
                for pdv in data {
                    if pdv.value_type == PDataValueType::Command {
                        command.extend_from_slice(&pdv.data);
                        if pdv.is_last {
                            return Ok(command);
                        }
                    }
                }
            }
            Pdu::AbortRQ { source } => {
                let reason = match source {
                    AbortRQSource::ServiceUser => "by the service user".to_string(),
                    AbortRQSource::ServiceProvider(reason) => {
                        format!("by the service provider: {reason:?}")
                    }
                    AbortRQSource::Reserved => "reserved source".to_string(),
                };
                return AbortedSnafu { reason }.fail();
            }
            pdu => {
                return UnexpectedPduSnafu {
                    pdu: pdu.short_description().to_string(),
                }
                .fail();
            }
        }
    }
}

/// What a C-STORE-RSP says.
struct Answer {
    status: u16,
    comment: Option<String>,
}

/// Parses a C-STORE-RSP command set and checks it answers our request.
fn parse_response(bytes: &[u8], message_id: u16) -> Result<Answer, LinkError> {
    let bad = |detail: String| LinkError::BadResponse { detail };
    let implicit = TransferSyntaxRegistry
        .get(uids::IMPLICIT_VR_LITTLE_ENDIAN)
        .ok_or_else(|| bad("implicit VR little endian is not registered".to_string()))?;
    let command = InMemDicomObject::read_dataset_with_ts(Cursor::new(bytes), implicit)
        .map_err(|e| bad(format!("cannot parse the command set: {e}")))?;
    let int = |tag| attrs::int(&command, tag);
    let field = int(tags::COMMAND_FIELD).ok_or_else(|| bad("no Command Field".to_string()))?;
    if field != i64::from(C_STORE_RSP) {
        return Err(bad(format!(
            "Command Field 0x{field:04X}, expected 0x{C_STORE_RSP:04X}"
        )));
    }
    if let Some(responded) = int(tags::MESSAGE_ID_BEING_RESPONDED_TO)
        && responded != i64::from(message_id)
    {
        return Err(bad(format!(
            "answers message {responded}, expected {message_id}"
        )));
    }
    let status = int(tags::STATUS)
        .and_then(|s| u16::try_from(s).ok())
        .ok_or_else(|| bad("no Status".to_string()))?;
    Ok(Answer {
        status,
        comment: attrs::string(&command, tags::ERROR_COMMENT),
    })
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
            let error = StorePeer::parse(bad).unwrap_err();
            assert!(error.contains(bad), "{bad}: {error}");
        }
    }

    #[test]
    fn command_set_is_implicit_le_with_group_length() {
        let command = c_store_rq("1.2.840.10008.5.1.4.1.1.7", "1.2.3", 7);
        let implicit = TransferSyntaxRegistry
            .get(uids::IMPLICIT_VR_LITTLE_ENDIAN)
            .unwrap();
        let parsed =
            InMemDicomObject::read_dataset_with_ts(Cursor::new(&command), implicit).unwrap();
        assert_eq!(
            attrs::int(&parsed, tags::COMMAND_GROUP_LENGTH),
            Some(command.len() as i64 - 12)
        );
        assert_eq!(attrs::int(&parsed, tags::COMMAND_FIELD), Some(1));
        assert_eq!(attrs::int(&parsed, tags::MESSAGE_ID), Some(7));
        assert_eq!(attrs::int(&parsed, tags::COMMAND_DATA_SET_TYPE), Some(0));
        assert_eq!(
            attrs::string(&parsed, tags::AFFECTED_SOP_CLASS_UID).as_deref(),
            Some("1.2.840.10008.5.1.4.1.1.7")
        );
        assert_eq!(
            attrs::string(&parsed, tags::AFFECTED_SOP_INSTANCE_UID).as_deref(),
            Some("1.2.3")
        );
    }

    fn response(field: u16, responding_to: u16, status: u16, comment: Option<&str>) -> Vec<u8> {
        let mut out = Vec::new();
        put_element(&mut out, tags::COMMAND_FIELD.1, &field.to_le_bytes());
        put_element(
            &mut out,
            tags::MESSAGE_ID_BEING_RESPONDED_TO.1,
            &responding_to.to_le_bytes(),
        );
        put_element(&mut out, 0x0800, &0x0101u16.to_le_bytes());
        put_element(&mut out, tags::STATUS.1, &status.to_le_bytes());
        if let Some(comment) = comment {
            let mut value = comment.as_bytes().to_vec();
            if value.len() % 2 == 1 {
                value.push(b' ');
            }
            put_element(&mut out, tags::ERROR_COMMENT.1, &value);
        }
        out
    }

    #[test]
    fn reads_c_store_responses() {
        let ok = parse_response(&response(0x8001, 3, 0x0000, None), 3).unwrap();
        assert_eq!((ok.status, ok.comment), (0, None));
        let refused = parse_response(&response(0x8001, 4, 0xA700, Some("disk full")), 4).unwrap();
        assert_eq!(refused.status, 0xA700);
        assert_eq!(refused.comment.as_deref(), Some("disk full"));
        // an answer to another message, or another command, is a protocol error
        assert!(parse_response(&response(0x8001, 5, 0x0000, None), 6).is_err());
        assert!(parse_response(&response(0x8030, 6, 0x0000, None), 6).is_err());
        assert!(parse_response(b"\x00\x00", 1).is_err());

        let error = StoreError::Refused {
            path: PathBuf::from("/out/sc.dcm"),
            peer: "PACS@host:104".to_string(),
            sop_instance: "1.2.3".to_string(),
            status: 0xA700,
            comment: Some("disk full".to_string()),
        };
        assert_eq!(
            error.to_string(),
            "/out/sc.dcm: PACS@host:104 refused 1.2.3: status 0xA700 (disk full)"
        );
    }

    #[test]
    fn walks_the_meta_group() {
        // (0002,0001) OB 2 bytes, (0002,0010) UI 4 bytes, then (0008,0016)
        let mut bytes = b"DICM".to_vec();
        bytes.extend_from_slice(&[2, 0, 1, 0, b'O', b'B', 0, 0, 2, 0, 0, 0, 0, 1]);
        bytes.extend_from_slice(&[2, 0, 0x10, 0, b'U', b'I', 4, 0, b'1', b'.', b'2', 0]);
        let data_start = bytes.len();
        bytes.extend_from_slice(&[8, 0, 0x16, 0, b'U', b'I', 2, 0, b'1', 0]);
        assert_eq!(meta_group_end(&bytes, 4), Some(data_start));
        assert_eq!(meta_group_end(&bytes[..data_start - 1], 4), None);
        assert_eq!(meta_group_end(&bytes[..data_start], 4), Some(data_start));
    }
}
