//! The file type identifier and the two VHDX headers: decoding, choosing the
//! current one, and encoding updates.

use uuid::Uuid;

use super::format::{
    FILE_SIGNATURE, HEADER_OFFSETS, HEADER_SIZE, MIB, checksum, corrupt, guid_at, put_guid,
    put_u16, put_u32, put_u64, seal, to_utf16le, u16_at, u32_at, u64_at, unsupported, utf16le,
};
use crate::Result;
use crate::file::ImageFile;

const HEADER_SIGNATURE: &[u8; 4] = b"head";

/// A decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub sequence_number: u64,
    pub file_write_guid: Uuid,
    pub data_write_guid: Uuid,
    pub log_guid: Uuid,
    pub log_version: u16,
    pub version: u16,
    pub log_length: u32,
    pub log_offset: u64,
}

impl Header {
    /// Decodes a header whose signature and checksum are right; `None`
    /// when they are not (the copy is not valid).
    pub fn decode(buf: &[u8; HEADER_SIZE]) -> Option<Header> {
        if &buf[..4] != HEADER_SIGNATURE || u32_at(buf, 4) != checksum(buf, 4) {
            return None;
        }
        Some(Header {
            sequence_number: u64_at(buf, 8),
            file_write_guid: guid_at(buf, 16),
            data_write_guid: guid_at(buf, 32),
            log_guid: guid_at(buf, 48),
            log_version: u16_at(buf, 64),
            version: u16_at(buf, 66),
            log_length: u32_at(buf, 68),
            log_offset: u64_at(buf, 72),
        })
    }

    /// Encodes the header with its checksum.
    pub fn encode(&self) -> Box<[u8; HEADER_SIZE]> {
        let mut b = Box::new([0u8; HEADER_SIZE]);
        b[..4].copy_from_slice(HEADER_SIGNATURE);
        put_u64(&mut b[..], 8, self.sequence_number);
        put_guid(&mut b[..], 16, self.file_write_guid);
        put_guid(&mut b[..], 32, self.data_write_guid);
        put_guid(&mut b[..], 48, self.log_guid);
        put_u16(&mut b[..], 64, self.log_version);
        put_u16(&mut b[..], 66, self.version);
        put_u32(&mut b[..], 68, self.log_length);
        put_u64(&mut b[..], 72, self.log_offset);
        seal(&mut b[..], 4);
        b
    }

    /// Checks the fields a valid current header must have.
    pub fn validate(&self, at: u64) -> Result<()> {
        if self.version != 1 {
            return Err(unsupported(format!(
                "header version {} (only version 1 is defined)",
                self.version
            )));
        }
        // Only version 0 exists; another version matters only when there
        // is a log to replay.
        if self.log_version != 0 && !self.log_guid.is_nil() {
            return Err(unsupported(format!(
                "log version {} (only version 0 is defined)",
                self.log_version
            )));
        }
        let len = u64::from(self.log_length);
        if len == 0 || len % MIB != 0 {
            return Err(corrupt(
                "header log length",
                at + 68,
                format!("{len} is not a non-zero multiple of 1 MiB"),
            ));
        }
        if self.log_offset < MIB || !self.log_offset.is_multiple_of(MIB) {
            return Err(corrupt(
                "header log offset",
                at + 72,
                format!(
                    "{:#x} is not a multiple of 1 MiB past the first MiB",
                    self.log_offset
                ),
            ));
        }
        if self.log_offset.checked_add(len).is_none() {
            return Err(corrupt("header log offset", at + 72, "log wraps past 2^64"));
        }
        Ok(())
    }

    /// The next header of a sequence: the sequence number plus one.
    pub fn next(&self) -> Result<Header> {
        let sequence_number = self.sequence_number.checked_add(1).ok_or_else(|| {
            unsupported("the header sequence number is at its maximum; the image cannot be updated")
        })?;
        Ok(Header {
            sequence_number,
            ..*self
        })
    }
}

/// The header in force and the slot (0 or 1) it was read from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CurrentHeader {
    pub header: Header,
    pub slot: usize,
}

/// What was found in the two header slots (for checks).
#[derive(Debug)]
pub(crate) struct HeaderSlots {
    pub raw: [Box<[u8; HEADER_SIZE]>; 2],
    pub decoded: [Option<Header>; 2],
}

/// Reads both header copies.
pub(crate) fn read_slots(file: &ImageFile) -> Result<HeaderSlots> {
    let mut raw = [Box::new([0u8; HEADER_SIZE]), Box::new([0u8; HEADER_SIZE])];
    for (i, b) in raw.iter_mut().enumerate() {
        file.read_at_zero_fill(&mut b[..], HEADER_OFFSETS[i])?;
    }
    let decoded = [Header::decode(&raw[0]), Header::decode(&raw[1])];
    Ok(HeaderSlots { raw, decoded })
}

/// Chooses the current header: the valid copy with the greater sequence
/// number. Two valid copies with the same number must be byte-identical.
pub(crate) fn choose(slots: &HeaderSlots) -> Result<CurrentHeader> {
    let current = match (slots.decoded[0], slots.decoded[1]) {
        (None, None) => {
            return Err(corrupt(
                "headers",
                HEADER_OFFSETS[0],
                "neither header copy has a valid signature and checksum",
            ));
        }
        (Some(h), None) => CurrentHeader { header: h, slot: 0 },
        (None, Some(h)) => CurrentHeader { header: h, slot: 1 },
        (Some(a), Some(b)) => {
            if a.sequence_number > b.sequence_number {
                CurrentHeader { header: a, slot: 0 }
            } else if b.sequence_number > a.sequence_number {
                CurrentHeader { header: b, slot: 1 }
            } else if slots.raw[0] == slots.raw[1] {
                CurrentHeader { header: a, slot: 0 }
            } else {
                return Err(corrupt(
                    "headers",
                    HEADER_OFFSETS[1],
                    format!(
                        "both copies carry sequence number {} but differ",
                        a.sequence_number
                    ),
                ));
            }
        }
    };
    current.header.validate(HEADER_OFFSETS[current.slot])?;
    Ok(current)
}

/// Checks the file type identifier and returns the creator it names.
pub(crate) fn read_identifier(file: &ImageFile) -> Result<Option<String>> {
    let mut b = vec![0u8; 520];
    file.read_at_zero_fill(&mut b, 0)?;
    if &b[..8] != FILE_SIGNATURE {
        return Err(corrupt(
            "file type identifier",
            0,
            "signature is not vhdxfile",
        ));
    }
    let creator = b[8..]
        .chunks_exact(2)
        .position(|c| c == [0, 0])
        .map_or(utf16le(&b[8..]), |end| utf16le(&b[8..8 + 2 * end]));
    Ok(creator.filter(|c| !c.is_empty()))
}

/// Encodes the file type identifier (64 KiB) naming `creator`.
pub(crate) fn encode_identifier(creator: &str) -> Vec<u8> {
    let mut b = vec![0u8; 64 * 1024];
    b[..8].copy_from_slice(FILE_SIGNATURE);
    let name = to_utf16le(creator);
    let n = name.len().min(510);
    b[8..8 + n].copy_from_slice(&name[..n]);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(seq: u64) -> Header {
        Header {
            sequence_number: seq,
            file_write_guid: Uuid::from_u128(1),
            data_write_guid: Uuid::from_u128(2),
            log_guid: Uuid::nil(),
            log_version: 0,
            version: 1,
            log_length: 1 << 20,
            log_offset: 1 << 20,
        }
    }

    fn slots(a: Option<Header>, b: Option<Header>) -> HeaderSlots {
        let enc = |h: Option<Header>| h.map_or(Box::new([0u8; HEADER_SIZE]), |h| h.encode());
        let raw = [enc(a), enc(b)];
        let decoded = [Header::decode(&raw[0]), Header::decode(&raw[1])];
        HeaderSlots { raw, decoded }
    }

    #[test]
    fn greater_sequence_wins() {
        assert_eq!(
            choose(&slots(Some(header(3)), Some(header(4))))
                .unwrap()
                .slot,
            1
        );
        assert_eq!(
            choose(&slots(Some(header(5)), Some(header(4))))
                .unwrap()
                .slot,
            0
        );
        assert_eq!(choose(&slots(None, Some(header(4)))).unwrap().slot, 1);
        assert!(choose(&slots(None, None)).is_err());
    }

    #[test]
    fn equal_sequences_must_be_identical() {
        assert!(choose(&slots(Some(header(7)), Some(header(7)))).is_ok());
        let mut other = header(7);
        other.data_write_guid = Uuid::from_u128(9);
        assert!(choose(&slots(Some(header(7)), Some(other))).is_err());
    }

    #[test]
    fn sequence_at_maximum_does_not_overflow() {
        assert!(header(u64::MAX).next().is_err());
        assert_eq!(
            header(u64::MAX - 1).next().unwrap().sequence_number,
            u64::MAX
        );
    }
}
