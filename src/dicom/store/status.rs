//! The C-STORE-RSP: receiving the command set that answers a request, parsing it, and what
//! its status means for the file ([`Answer::outcome`]); and how one file's C-STORE ends when
//! it does not succeed ([`Failure`]).

use std::io::Cursor;
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use dicom_dictionary_std::{tags, uids};
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::pdu::{AbortRQSource, PDataValueType};
use dicom_ul::{ClientAssociation, Pdu};
use snafu::ResultExt;

use super::error::{AbortedSnafu, LinkError, ReceiveSnafu, StoreError, UnexpectedPduSnafu};
use crate::dicom::attrs;

/// C-STORE-RSP command field.
const C_STORE_RSP: u16 = 0x8001;
/// Storage warnings that still mean the instance was stored (PS3.4 B.2.3).
const WARNING_STATUSES: [u16; 3] = [0xB000, 0xB006, 0xB007];

/// How one file's C-STORE ended when it did not succeed.
pub(super) enum Failure {
    /// This file failed; the association is intact.
    File(Box<StoreError>),
    /// The link broke: this file failed and the association is unusable.
    Link(Arc<LinkError>, Box<StoreError>),
}

impl Failure {
    pub(super) fn file(error: StoreError) -> Self {
        Self::File(Box::new(error))
    }
}

/// Receives PDUs until a complete command set has arrived; returns its bytes.
pub(super) fn receive_command(
    association: &mut ClientAssociation<TcpStream>,
) -> Result<Vec<u8>, LinkError> {
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
pub(super) struct Answer {
    status: u16,
    comment: Option<String>,
}

/// Parses a C-STORE-RSP command set and checks it answers our request.
pub(super) fn parse_response(bytes: &[u8], message_id: u16) -> Result<Answer, LinkError> {
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

impl Answer {
    /// What the status means for the file: stored (success, or a storage warning, which is
    /// logged) or refused.
    pub(super) fn outcome(
        self,
        path: &Path,
        peer: &str,
        sop_instance: String,
    ) -> Result<(), StoreError> {
        match self.status {
            0x0000 => {
                tracing::debug!("{}: {sop_instance} stored by {peer}", path.display());
                Ok(())
            }
            status if WARNING_STATUSES.contains(&status) => {
                tracing::warn!(
                    "{}: {peer} stored {sop_instance} with warning status 0x{status:04X}{}",
                    path.display(),
                    self.comment
                        .as_ref()
                        .map(|c| format!(" ({c})"))
                        .unwrap_or_default()
                );
                Ok(())
            }
            status => Err(StoreError::Refused {
                path: path.to_path_buf(),
                peer: peer.to_string(),
                sop_instance,
                status,
                comment: self.comment,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// Appends one implicit VR little endian command element (written here rather than with
    /// the request encoder, so that status does not depend on c_store).
    fn put(out: &mut Vec<u8>, element: u16, value: &[u8]) {
        out.extend_from_slice(&0x0000u16.to_le_bytes());
        out.extend_from_slice(&element.to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
    }

    fn response(field: u16, responding_to: u16, status: u16, comment: Option<&str>) -> Vec<u8> {
        let mut out = Vec::new();
        put(&mut out, tags::COMMAND_FIELD.1, &field.to_le_bytes());
        put(
            &mut out,
            tags::MESSAGE_ID_BEING_RESPONDED_TO.1,
            &responding_to.to_le_bytes(),
        );
        put(&mut out, 0x0800, &0x0101u16.to_le_bytes());
        put(&mut out, tags::STATUS.1, &status.to_le_bytes());
        if let Some(comment) = comment {
            let mut value = comment.as_bytes().to_vec();
            if value.len() % 2 == 1 {
                value.push(b' ');
            }
            put(&mut out, tags::ERROR_COMMENT.1, &value);
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
    fn success_and_warnings_store_other_statuses_refuse() {
        let path = Path::new("/out/sc.dcm");
        let answer = |status, comment: Option<&str>| Answer {
            status,
            comment: comment.map(str::to_string),
        };
        for status in [0x0000, 0xB000, 0xB006, 0xB007] {
            assert!(
                answer(status, None)
                    .outcome(path, "PACS@host:104", "1.2.3".to_string())
                    .is_ok(),
                "0x{status:04X}"
            );
        }
        let refused = answer(0xA700, Some("disk full"))
            .outcome(path, "PACS@host:104", "1.2.3".to_string())
            .unwrap_err();
        assert_eq!(
            refused.to_string(),
            "/out/sc.dcm: PACS@host:104 refused 1.2.3: status 0xA700 (disk full)"
        );
    }
}
