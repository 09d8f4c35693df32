//! The framing of a CRIU image file: one or two u32 magic numbers, then
//! entries of {u32 little-endian size, protobuf message}.
//!
//! Every size read from a file is checked against the bytes that are
//! actually there before it is used: a corrupt size yields an error naming
//! the offset, never an allocation or a panic.

use crate::Error;

/// First magic of ordinary images.
pub const IMG_COMMON_MAGIC: u32 = 0x5456_4319;
/// First magic of service files (statistics, irmap cache).
pub const IMG_SERVICE_MAGIC: u32 = 0x5510_5940;

/// Type magics of the images this crate decodes.
pub mod magic {
    pub const INVENTORY: u32 = 0x5831_3116;
    pub const PSTREE: u32 = 0x5027_3030;
    pub const CORE: u32 = 0x5505_3847;
    pub const IDS: u32 = 0x5443_2030;
    pub const MM: u32 = 0x5749_2820;
    pub const PAGEMAP: u32 = 0x5608_4025;
    pub const FDINFO: u32 = 0x5621_3732;
    pub const FILES: u32 = 0x5630_3138;
    pub const STATS: u32 = 0x5709_3306;
    /// Sockets in images of CRIU before 3.4 (later ones are in files.img).
    pub const INETSK: u32 = 0x5644_3851;
    pub const UNIXSK: u32 = 0x5437_3943;
}

/// One protobuf message of an image, with the offset of its size field.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub offset: usize,
    pub bytes: &'a [u8],
}

fn read_u32(data: &[u8], offset: usize, file: &str) -> Result<u32, Error> {
    let bytes = data
        .get(offset..offset + 4)
        .ok_or_else(|| Error::truncated(file, offset, 4, data.len().saturating_sub(offset)))?;
    Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Checks the magic numbers and splits the rest into entries.
///
/// `expected` is the type magic; an image may carry it alone (old format)
/// or after the common or service magic.
pub fn entries<'a>(data: &'a [u8], expected: u32, file: &str) -> Result<Vec<Entry<'a>>, Error> {
    let first = read_u32(data, 0, file)?;
    let mut offset = 4;
    if first == IMG_COMMON_MAGIC || first == IMG_SERVICE_MAGIC {
        let second = read_u32(data, 4, file)?;
        if second != expected {
            return Err(Error::magic(file, 4, expected, second));
        }
        offset = 8;
    } else if first != expected {
        return Err(Error::magic(file, 0, expected, first));
    }
    let mut out = Vec::new();
    while offset < data.len() {
        let size = read_u32(data, offset, file)? as usize;
        let start = offset + 4;
        let available = data.len() - start;
        if size > available {
            return Err(Error::truncated(file, offset, size, available));
        }
        out.push(Entry {
            offset,
            bytes: &data[start..start + size],
        });
        offset = start + size;
    }
    Ok(out)
}

/// Decodes one entry as message `M`.
pub fn decode<M: prost::Message + Default>(entry: Entry<'_>, file: &str) -> Result<M, Error> {
    M::decode(entry.bytes).map_err(|e| Error::protobuf(file, entry.offset, e))
}

/// Decodes every entry as message `M`.
pub fn decode_all<M: prost::Message + Default>(
    data: &[u8],
    expected: u32,
    file: &str,
) -> Result<Vec<M>, Error> {
    entries(data, expected, file)?
        .into_iter()
        .map(|e| decode(e, file))
        .collect()
}

/// Decodes the single entry of a one-entry image (inventory, stats).
pub fn decode_one<M: prost::Message + Default>(
    data: &[u8],
    expected: u32,
    file: &str,
) -> Result<M, Error> {
    let all = entries(data, expected, file)?;
    let first = all.first().ok_or_else(|| Error::empty(file))?;
    decode(*first, file)
}

#[cfg(test)]
pub(crate) fn frame(magics: &[u32], messages: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in magics {
        out.extend_from_slice(&m.to_le_bytes());
    }
    for msg in messages {
        out.extend_from_slice(&(msg.len() as u32).to_le_bytes());
        out.extend_from_slice(msg);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn splits_entries_after_one_or_two_magics() {
        let data = frame(&[IMG_COMMON_MAGIC, magic::PSTREE], &[vec![8, 1], vec![]]);
        let e = entries(&data, magic::PSTREE, "pstree.img").unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].offset, e[0].bytes), (8, &[8u8, 1][..]));
        assert_eq!(e[1].bytes.len(), 0);
        let old = frame(&[magic::PSTREE], &[vec![8, 1]]);
        assert_eq!(entries(&old, magic::PSTREE, "p").unwrap().len(), 1);
    }

    #[test]
    fn wrong_magic_names_file_and_offset() {
        let data = frame(&[IMG_COMMON_MAGIC, magic::CORE], &[]);
        let err = entries(&data, magic::PSTREE, "pstree.img").unwrap_err();
        assert_eq!(err.file, "pstree.img");
        assert_eq!(err.offset, 4);
        assert!(matches!(err.kind, ErrorKind::Magic { .. }));
        assert!(err.to_string().contains("pstree.img"), "{err}");
    }

    #[test]
    fn absurd_sizes_and_truncation_are_errors_not_allocations() {
        let mut data = frame(&[IMG_COMMON_MAGIC, magic::PSTREE], &[]);
        data.extend_from_slice(&u32::MAX.to_le_bytes());
        data.extend_from_slice(&[1, 2, 3]);
        let err = entries(&data, magic::PSTREE, "pstree.img").unwrap_err();
        assert_eq!(err.offset, 8);
        assert!(
            matches!(err.kind, ErrorKind::Truncated { wanted, available: 3 } if wanted == u32::MAX as usize)
        );
        // A size field cut in half.
        let data = [&frame(&[IMG_COMMON_MAGIC, magic::PSTREE], &[])[..], &[5, 0]].concat();
        assert!(entries(&data, magic::PSTREE, "p").is_err());
        assert!(entries(&[], magic::PSTREE, "p").is_err());
        assert!(entries(&[0x19], magic::PSTREE, "p").is_err());
    }

    #[test]
    fn garbage_protobuf_is_an_error_with_offset() {
        // Field 1, wire type 2 (length-delimited) claiming 100 bytes.
        let data = frame(&[IMG_COMMON_MAGIC, magic::PSTREE], &[vec![0x0a, 100, 1]]);
        let err = decode_all::<crate::messages::PstreeEntry>(&data, magic::PSTREE, "pstree.img")
            .unwrap_err();
        assert_eq!(err.offset, 8);
        assert!(matches!(err.kind, ErrorKind::Protobuf(_)));
    }
}
