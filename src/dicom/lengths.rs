//! Declared value lengths, checked against the bytes a file holds before dicom-rs parses it.
//!
//! dicom-rs reserves and zero-fills each value at its declared length before it reads the
//! value, so a file of a few hundred bytes that declares a 4 GiB value costs 4 GiB of memory
//! before the read fails; a drop folder holding a few such files would exhaust the daemon.
//! This walk reads headers only, with dicom-rs's own header decoders, follows sequences, items
//! and pixel fragments the way its data set reader does, and skips every value. A value that
//! runs past the end of the data is reported before anything is allocated for it. Deflated
//! data sets are inflated as a stream and discarded, so the check holds no copy of the data.
//!
//! Where the bytes stop making sense (an unknown transfer syntax, a header that does not
//! decode), the walk ends without a verdict: the parser that follows reports those.

use std::io::{self, Read};

use dicom_core::Tag;
use dicom_core::VR;
use dicom_core::header::{DataElementHeader, HasLength, SequenceItemHeader};
use dicom_dictionary_std::tags;
use dicom_encoding::decode::DecodeFrom;
use dicom_encoding::decode::explicit_le::ExplicitVRLittleEndianDecoder;
use dicom_encoding::{Codec, TransferSyntax, TransferSyntaxIndex};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

/// Item tags (PS3.5 7.5), which the standard dictionary does not name.
const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_DELIMITER: Tag = Tag(0xFFFE, 0xE00D);

/// A value whose declared length runs past the end of the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overrun {
    /// The element (or, inside encapsulated Pixel Data, the item tag of the fragment).
    pub tag: Tag,
    /// Where the value starts: a byte offset from the "DICM" marker in the file meta group,
    /// from the start of the data set (after inflation, where deflated) elsewhere.
    pub position: u64,
    /// The declared length in bytes.
    pub declared: u32,
    /// Whether the value is in the file meta group.
    pub in_meta: bool,
}

impl std::fmt::Display for Overrun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "element ({:04X},{:04X}) declares a value of {} bytes at byte {} of the {}, past \
             the end of the data",
            self.tag.group(),
            self.tag.element(),
            self.declared,
            self.position,
            if self.in_meta {
                "file meta group"
            } else {
                "data set"
            }
        )
    }
}

/// Checks a Part 10 file from its "DICM" marker: the file meta group, then the data set in
/// the transfer syntax the meta group names. With `stop_at_pixel_data` the walk ends at the
/// top-level Pixel Data element, as a header-only parse does.
pub fn check_part10(bytes_from_magic: &[u8], stop_at_pixel_data: bool) -> Result<(), Overrun> {
    let Some(meta) = bytes_from_magic.get(4..) else {
        return Ok(());
    };
    let Some((meta_len, ts_uid)) = walk_meta(meta)? else {
        return Ok(());
    };
    let Some(ts) = TransferSyntaxRegistry.get(ts_uid.trim_end_matches(['\0', ' '])) else {
        return Ok(());
    };
    let data_set = meta.get(meta_len..).unwrap_or_default();
    check_data_set(data_set, ts, stop_at_pixel_data)
}

/// Checks a data set in the given transfer syntax (a bare data set, or a Part 10 file's after
/// its meta group).
pub fn check_data_set(
    bytes: &[u8],
    ts: &TransferSyntax,
    stop_at_pixel_data: bool,
) -> Result<(), Overrun> {
    match ts.codec() {
        Codec::Dataset(Some(adapter)) => {
            let mut source = Source::stream(adapter.adapt_reader(Box::new(bytes)));
            walk_data_set(&mut source, ts, stop_at_pixel_data)
        }
        // A stub without a data set codec: the parser refuses it.
        Codec::Dataset(None) => Ok(()),
        _ => walk_data_set(&mut Source::slice(bytes), ts, stop_at_pixel_data),
    }
}

/// The data being walked, with the position of the next byte.
struct Source<'a> {
    data: Data<'a>,
    position: u64,
}

enum Data<'a> {
    /// In memory: skips are free, and a length is checked against what is left.
    Slice(&'a [u8]),
    /// Inflated as it is read: skips read and discard.
    Stream(Box<dyn Read + 'a>),
}

impl<'a> Source<'a> {
    fn slice(bytes: &'a [u8]) -> Self {
        Source {
            data: Data::Slice(bytes),
            position: 0,
        }
    }

    fn stream(reader: Box<dyn Read + 'a>) -> Self {
        Source {
            data: Data::Stream(reader),
            position: 0,
        }
    }

    /// Skips `len` bytes; false when the data ends first.
    fn skip(&mut self, len: u32) -> bool {
        let len = u64::from(len);
        let complete = match &mut self.data {
            Data::Slice(rest) => match usize::try_from(len).ok().and_then(|n| rest.get(n..)) {
                Some(after) => {
                    *rest = after;
                    true
                }
                None => false,
            },
            Data::Stream(reader) => {
                matches!(io::copy(&mut reader.take(len), &mut io::sink()), Ok(n) if n == len)
            }
        };
        self.position += len;
        complete
    }
}

impl Read for Source<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match &mut self.data {
            Data::Slice(rest) => rest.read(buf)?,
            Data::Stream(reader) => reader.read(buf)?,
        };
        self.position += n as u64;
        Ok(n)
    }
}

/// Walks the file meta group as dicom-object reads it: (0002,0000) first, then elements until
/// its group length is consumed. Returns the meta group's length in bytes and the transfer
/// syntax UID, or `None` where the group does not decode (the parser reports that).
fn walk_meta(meta: &[u8]) -> Result<Option<(usize, String)>, Overrun> {
    let decoder = ExplicitVRLittleEndianDecoder::default();
    let mut source = Source::slice(meta);
    let mut group_length = None;
    let mut ts_uid = None;
    loop {
        if let Some(group_length) = group_length
            && source.position >= 12 + u64::from(group_length)
        {
            break;
        }
        let Ok((header, _)) = DecodeFrom::<Source>::decode_header(&decoder, &mut source) else {
            return Ok(None);
        };
        let Some(len) = header.length().get() else {
            return Ok(None);
        };
        let value_at = source.position;
        let overrun = Overrun {
            tag: header.tag,
            position: 4 + value_at,
            declared: len,
            in_meta: true,
        };
        let value = usize::try_from(value_at)
            .ok()
            .and_then(|start| meta.get(start..start.checked_add(len as usize)?));
        let Some(value) = value else {
            return Err(overrun);
        };
        match header.tag {
            tags::FILE_META_INFORMATION_GROUP_LENGTH if value.len() == 4 => {
                group_length = Some(u32::from_le_bytes([value[0], value[1], value[2], value[3]]));
            }
            tags::TRANSFER_SYNTAX_UID => ts_uid = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
        if group_length.is_none() || !source.skip(len) {
            // dicom-object requires the group length first.
            return Ok(None);
        }
    }
    let meta_len = usize::try_from(source.position).unwrap_or(usize::MAX);
    Ok(ts_uid.map(|uid| (meta_len, uid)))
}

/// What the walk is inside of, innermost last.
#[derive(Debug, Clone, Copy)]
enum Level {
    /// A sequence: item headers follow. `end` for a defined length.
    Sequence { end: Option<u64> },
    /// An item of a sequence: data elements follow.
    Item { end: Option<u64> },
    /// Encapsulated Pixel Data: fragment items follow, each a value.
    Fragments,
}

impl Level {
    fn end(self) -> Option<u64> {
        match self {
            Level::Sequence { end } | Level::Item { end } => end,
            Level::Fragments => None,
        }
    }
}

fn walk_data_set(
    source: &mut Source<'_>,
    ts: &TransferSyntax,
    stop_at_pixel_data: bool,
) -> Result<(), Overrun> {
    let Some(decoder) = ts.decoder_for::<Source>() else {
        return Ok(());
    };
    let mut levels: Vec<Level> = Vec::new();
    loop {
        // Defined-length sequences and items end by position, as in dicom-rs's reader.
        while levels
            .last()
            .and_then(|level| level.end())
            .is_some_and(|end| source.position >= end)
        {
            levels.pop();
        }
        match levels.last().copied() {
            Some(Level::Sequence { .. }) => {
                let Ok(header) = decoder.decode_item_header(source) else {
                    return Ok(());
                };
                match header {
                    SequenceItemHeader::Item { len } => levels.push(Level::Item {
                        end: len.get().map(|len| source.position + u64::from(len)),
                    }),
                    SequenceItemHeader::ItemDelimiter => {}
                    SequenceItemHeader::SequenceDelimiter => {
                        levels.pop();
                    }
                }
            }
            Some(Level::Fragments) => {
                let Ok(header) = decoder.decode_item_header(source) else {
                    return Ok(());
                };
                match header {
                    SequenceItemHeader::Item { len } => {
                        let Some(len) = len.get() else {
                            return Ok(());
                        };
                        skip_value(source, ITEM, len)?;
                    }
                    SequenceItemHeader::SequenceDelimiter => {
                        levels.pop();
                    }
                    SequenceItemHeader::ItemDelimiter => return Ok(()),
                }
            }
            level @ (Some(Level::Item { .. }) | None) => {
                let Ok((header, _)) = decoder.decode_header(source) else {
                    return Ok(());
                };
                let DataElementHeader { tag, vr, len } = header;
                if level.is_none() && tag == tags::PIXEL_DATA && stop_at_pixel_data {
                    return Ok(());
                }
                if tag == ITEM_DELIMITER {
                    if level.is_some() {
                        levels.pop();
                    }
                    continue;
                }
                match len.get() {
                    None if tag == tags::PIXEL_DATA => levels.push(Level::Fragments),
                    // Any other undefined length is read as a sequence, whatever its VR.
                    None => levels.push(Level::Sequence { end: None }),
                    Some(len) if vr == VR::SQ => levels.push(Level::Sequence {
                        end: Some(source.position + u64::from(len)),
                    }),
                    Some(len) => skip_value(source, tag, len)?,
                }
            }
        }
    }
}

fn skip_value(source: &mut Source<'_>, tag: Tag, len: u32) -> Result<(), Overrun> {
    let position = source.position;
    if source.skip(len) {
        Ok(())
    } else {
        Err(Overrun {
            tag,
            position,
            declared: len,
            in_meta: false,
        })
    }
}
