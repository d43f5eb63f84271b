//! What a C-STORE can fail with: [`StoreError`] per file, and [`LinkError`] for what broke on
//! an established association.

use std::path::PathBuf;
use std::sync::Arc;

use dicom_ul::association::Error as UlError;
use snafu::Snafu;

use crate::dicom::file::ReadError;

/// Why one file was not stored. Every message names the file and the peer (`AE@host:port`),
/// and the SOP Instance UID when it is known.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(super)))]
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
#[snafu(visibility(pub(super)))]
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
pub(super) fn chain(error: &dyn std::error::Error) -> String {
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
