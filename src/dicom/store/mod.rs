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

// One concern per file, dependencies one way (no cycles): this module -> c_store (one file's
// request) -> association (negotiation) and status (the answer) -> error, peer. The public
// types live in leaf modules so that no submodule needs to reach back up to this one.
mod association;
mod c_store;
mod error;
mod peer;
mod status;

use std::path::PathBuf;
use std::sync::Arc;

pub use error::{LinkError, StoreError};
pub use peer::{AeTitleError, ParsePeerError, StorePeer};

use association::{Header, Proposal, establish, read_header};
use c_store::store_one;
use error::chain;
use status::Failure;

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
