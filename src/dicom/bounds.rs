//! What a file may ask of the parser, checked before dicom-rs parses it: every declared value
//! length within the bytes present, and sequences nested no deeper than the stack allows.
//!
//! dicom-rs reserves and zero-fills each value at its declared length before it reads the
//! value, so a file of a few hundred bytes that declares a 4 GiB value costs 4 GiB of memory
//! before the read fails; a drop folder holding a few such files would exhaust the daemon.
//! This walk reads headers only, with dicom-rs's own header decoders, follows sequences, items
//! and pixel fragments the way its data set reader does, and skips every value. A value that
//! runs past the end of the data is reported before anything is allocated for it, and so is
//! a sequence nested deeper than [`MAX_SEQUENCE_DEPTH`]. Deflated
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
use snafu::Snafu;

/// Item tags (PS3.5 7.5), which the standard dictionary does not name.
const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_DELIMITER: Tag = Tag(0xFFFE, 0xE00D);

/// Sequences nested deeper than this are refused. dicom-rs parses a nested sequence by
/// recursion, about 1.5 KiB of stack per level: 20000 levels in a 700 KB file overflow the
/// stack and abort the process, which takes the daemon or Orthanc down with it. Real data
/// nests a few levels (structured reports a few dozen at most).
pub const MAX_SEQUENCE_DEPTH: usize = 128;

/// What a file asks of the parser that it is refused.
#[derive(Debug, Clone, PartialEq, Eq, Snafu)]
#[non_exhaustive]
pub enum BoundsError {
    /// A value's declared length runs past the end of the data.
    #[snafu(display(
        "element {tag} declares a value of {declared} bytes at byte {position} of the {}, \
         past the end of the data",
        if *in_meta { "file meta group" } else { "data set" }
    ))]
    PastEnd {
        /// The element (inside encapsulated Pixel Data, the fragment's item tag).
        tag: Tag,
        /// Where the value starts: from the "DICM" marker in the file meta group, from the
        /// start of the data set (after inflation, where deflated) elsewhere.
        position: u64,
        /// The declared length in bytes.
        declared: u32,
        /// Whether the value is in the file meta group.
        in_meta: bool,
    },
    /// Sequences nested deeper than [`MAX_SEQUENCE_DEPTH`].
    #[snafu(display(
        "element {tag} at byte {position} of the data set opens a sequence nested deeper \
         than {MAX_SEQUENCE_DEPTH} levels"
    ))]
    TooDeep {
        /// The element that opens the sequence.
        tag: Tag,
        /// Where its value starts.
        position: u64,
    },
}

/// Checks a Part 10 file from its "DICM" marker: the file meta group, then the data set in
/// the transfer syntax the meta group names. With `stop_at_pixel_data` the walk ends at the
/// top-level Pixel Data element, as a header-only parse does.
pub fn check_part10(bytes_from_magic: &[u8], stop_at_pixel_data: bool) -> Result<(), BoundsError> {
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
) -> Result<(), BoundsError> {
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
    /// Bytes that dicom-rs counts as read but leaves in its reader: it reads a binary numeric
    /// value in whole numbers (a 2-byte SL value reads nothing) yet advances its position by
    /// the declared length, and ends defined-length sequences and items by that position.
    counted_unread: u64,
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
            counted_unread: 0,
        }
    }

    fn stream(reader: Box<dyn Read + 'a>) -> Self {
        Source {
            data: Data::Stream(reader),
            position: 0,
            counted_unread: 0,
        }
    }

    /// The position as dicom-rs's reader counts it.
    fn counted(&self) -> u64 {
        self.position + self.counted_unread
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
fn walk_meta(meta: &[u8]) -> Result<Option<(usize, String)>, BoundsError> {
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
        let overrun = BoundsError::PastEnd {
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

/// An open sequence or item, as dicom-rs's data set reader keeps it.
#[derive(Debug, Clone, Copy)]
struct Open {
    is_item: bool,
    /// Inside encapsulated Pixel Data: items are fragments, read as values.
    pixel_data: bool,
    /// The defined length, if any: the reader closes it at `start + len`.
    len: Option<u32>,
    start: u64,
}

/// Walks a data set as dicom-rs's `DataSetReader` tokenises it (dicom-parser 0.10), with each
/// value skipped instead of read: the same states (inside a sequence or not, the stack of
/// open sequences and items), the same order of checks, the same position count. Where the
/// reader would fail, the walk ends without a verdict.
fn walk_data_set(
    source: &mut Source<'_>,
    ts: &TransferSyntax,
    stop_at_pixel_data: bool,
) -> Result<(), BoundsError> {
    let Some(decoder) = ts.decoder_for::<Source>() else {
        return Ok(());
    };
    let mut open: Vec<Open> = Vec::new();
    let mut in_sequence = false;
    let mut check_ends = false;
    let mut offset_table_next = false;
    loop {
        // Defined lengths end by the reader's count of bytes, one level per step.
        if check_ends {
            if let Some(last) = open.last()
                && let Some(len) = last.len
            {
                let end = last.start + u64::from(len);
                if end == source.counted() {
                    in_sequence = last.is_item;
                    open.pop();
                    continue;
                }
                if end < source.counted() {
                    return Ok(());
                }
            }
            check_ends = false;
        }

        if in_sequence {
            let Ok(header) = decoder.decode_item_header(source) else {
                return Ok(());
            };
            match header {
                SequenceItemHeader::Item { len } => {
                    let Some(sequence) = open.last() else {
                        return Ok(());
                    };
                    in_sequence = false;
                    open.push(Open {
                        is_item: true,
                        pixel_data: sequence.pixel_data,
                        len: len.get(),
                        start: source.counted(),
                    });
                    check_ends = len.0 == 0;
                }
                SequenceItemHeader::ItemDelimiter => {
                    open.pop();
                    check_ends = true;
                }
                SequenceItemHeader::SequenceDelimiter => {
                    open.pop();
                    in_sequence = false;
                    check_ends = true;
                }
            }
            continue;
        }

        if let Some(fragment) = open.last().filter(|last| last.is_item && last.pixel_data) {
            // The Basic Offset Table, then each fragment: one value per item.
            let Some(len) = fragment.len else {
                return Ok(());
            };
            if offset_table_next {
                // read as whole 32-bit offsets, and counted as read
                skip_value(source, ITEM, VR::OB, len - len % 4)?;
                offset_table_next = false;
            } else {
                skip_value(source, ITEM, VR::OB, len)?;
            }
            check_ends = true;
            continue;
        }

        let Ok((header, _)) = decoder.decode_header(source) else {
            return Ok(());
        };
        let DataElementHeader { tag, vr, len } = header;
        // A header-only read stops at the first top-level element from Pixel Data on.
        if stop_at_pixel_data && open.is_empty() && tag >= tags::PIXEL_DATA {
            return Ok(());
        }
        let opens_sequence = vr == VR::SQ || len.is_undefined();
        if opens_sequence && open.iter().filter(|o| !o.is_item).count() >= MAX_SEQUENCE_DEPTH {
            return TooDeepSnafu {
                tag,
                position: source.position,
            }
            .fail();
        }
        if vr == VR::SQ {
            in_sequence = true;
            open.push(Open {
                is_item: false,
                pixel_data: false,
                len: len.get(),
                start: source.counted(),
            });
            check_ends = len.0 == 0;
        } else if tag == ITEM_DELIMITER {
            // outside any sequence the reader ignores it
            if !open.is_empty() {
                in_sequence = true;
                open.pop();
                check_ends = true;
            }
        } else if tag == tags::PIXEL_DATA && len.is_undefined() {
            open.push(Open {
                is_item: false,
                pixel_data: true,
                len: None,
                start: source.counted(),
            });
            // the first item is the Basic Offset Table
            let Ok(first) = decoder.decode_item_header(source) else {
                return Ok(());
            };
            match first {
                SequenceItemHeader::Item { len } => {
                    open.push(Open {
                        is_item: true,
                        pixel_data: true,
                        len: len.get(),
                        start: source.counted(),
                    });
                    check_ends = len.0 == 0;
                    offset_table_next = len.0 != 0;
                }
                SequenceItemHeader::SequenceDelimiter => {
                    open.pop();
                }
                SequenceItemHeader::ItemDelimiter => return Ok(()),
            }
        } else if let Some(len) = len.get() {
            skip_value(source, tag, vr, len)?;
            check_ends = true;
        } else {
            // any other undefined length opens a sequence, whatever its VR
            in_sequence = true;
            open.push(Open {
                is_item: false,
                pixel_data: false,
                len: None,
                start: source.counted(),
            });
        }
    }
}

/// Skips a value as dicom-rs reads it: binary numbers in whole numbers of their size.
fn skip_value(source: &mut Source<'_>, tag: Tag, vr: VR, len: u32) -> Result<(), BoundsError> {
    let read = len - len % number_size(vr);
    let position = source.position;
    if !source.skip(read) {
        return PastEndSnafu {
            tag,
            position,
            declared: len,
            in_meta: false,
        }
        .fail();
    }
    source.counted_unread += u64::from(len - read);
    Ok(())
}

/// Bytes per number of a binary numeric VR; 1 for bytes and text.
fn number_size(vr: VR) -> u32 {
    match vr {
        VR::US | VR::OW | VR::SS => 2,
        VR::AT | VR::FL | VR::OF | VR::SL | VR::OL | VR::UL => 4,
        VR::FD | VR::OD | VR::SV | VR::OV | VR::UV => 8,
        _ => 1,
    }
}
