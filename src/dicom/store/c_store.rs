//! The C-STORE request for one file ([`store_one`]): the data set bytes as they are in the
//! file, or re-encoded for the accepted transfer syntax; the command set; sending both over
//! the association. The answer is read and judged in [`super::status`].

use std::borrow::Cow;
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use dicom_dictionary_std::{tags, uids};
use dicom_encoding::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::pdu::{PDataValue, PDataValueType};
use dicom_ul::{ClientAssociation, Pdu};
use snafu::ResultExt;

use super::association::{Header, find_context, header, is_native, trim_uid};
use super::error::{EncodeSnafu, LinkError, SendSnafu, StoreError, UnreadableSnafu, WriteSnafu};
use super::status::{Failure, parse_response, receive_command};
use crate::dicom::file::{self, Depth, Layout, ReadError};

/// C-STORE-RQ command field.
const C_STORE_RQ: u16 = 0x0001;
/// Priority MEDIUM.
const PRIORITY_MEDIUM: u16 = 0x0000;
/// Command Data Set Type: a data set follows the command (any value but 0x0101).
const DATA_SET_PRESENT: u16 = 0x0000;

/// Sends one file: reads it, picks its presentation context, sends the C-STORE-RQ and the
/// data set, checks the C-STORE-RSP.
pub(super) fn store_one(
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
    let (context_id, data): (u8, Cow<'_, [u8]>) =
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

    answer
        .outcome(path, peer, header.sop_instance)
        .map_err(Failure::file)
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

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use dicom_object::InMemDicomObject;

    use super::*;
    use crate::dicom::attrs;

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
