//! Association negotiation: what each file needs (its [`Header`]), the presentation contexts
//! to propose for a batch ([`Proposal`]), requesting the association ([`establish`]), why it
//! could not be had ([`Unestablished`]), and finding the accepted context a file goes over
//! ([`find_context`]).

use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use dicom_dictionary_std::{tags, uids};
use dicom_encoding::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::association::Error as UlError;
use dicom_ul::pdu::PresentationContextNegotiated;
use dicom_ul::{ClientAssociation, ClientAssociationOptions};
use snafu::ResultExt;

use super::error::{StoreError, UnreadableSnafu};
use super::peer::StorePeer;
use crate::dicom::attrs;
use crate::dicom::file::{self, Depth, DicomFile};

/// The most presentation contexts one association can propose (odd IDs 1 to 255).
const MAX_PRESENTATION_CONTEXTS: usize = 128;

/// What a file is, as far as negotiation goes.
pub(super) struct Header {
    pub(super) sop_class: String,
    pub(super) sop_instance: String,
    pub(super) transfer_syntax: String,
}

/// UIDs as compared: without the trailing NUL or space padding.
pub(super) fn trim_uid(uid: &str) -> &str {
    uid.trim_matches(|c: char| c == '\0' || c == ' ')
}

/// The SOP class, SOP instance and transfer syntax of a parsed file.
pub(super) fn header(file: &DicomFile, peer: &str) -> Result<Header, StoreError> {
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
pub(super) fn read_header(path: &Path, peer: &str) -> Result<Header, StoreError> {
    let file = file::open(path, Depth::Header).context(UnreadableSnafu { peer })?;
    header(&file, peer)
}

/// Whether the pixel data of a transfer syntax is native (not encapsulated), so that the
/// data set can be re-encoded in Explicit or Implicit VR Little Endian without touching it.
pub(super) fn is_native(transfer_syntax: &str) -> bool {
    TransferSyntaxRegistry
        .get(transfer_syntax)
        .is_some_and(|ts| !ts.is_encapsulated_pixel_data() && !ts.is_unsupported())
}

/// The contexts to propose: (SOP class, transfer syntaxes), in proposal order.
#[derive(Default)]
pub(super) struct Proposal {
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
    pub(super) fn add(&mut self, header: &Header) -> bool {
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
pub(super) enum Unestablished {
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

    pub(super) fn error_for(&self, path: &Path, header: &Header, peer: &str) -> StoreError {
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

/// Requests the association.
pub(super) fn establish(
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
pub(super) fn find_context<'a>(
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
