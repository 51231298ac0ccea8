//! The IDX format of MNIST (gzipped or raw): magic `00 00 08 D` (unsigned bytes, D
//! dimensions), D big-endian u32 sizes, then the data. Every count is validated, so a
//! bad or truncated file is reported precisely instead of misread.

use crate::error::{Error, Result};
use std::io::Read;
use std::path::Path;

#[derive(Clone, Debug, PartialEq)]
pub struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

pub fn read_idx(path: &Path) -> Result<Idx> {
    let raw = std::fs::read(path).map_err(|e| Error(format!("cannot read {}: {e}", path.display())))?;
    decode_idx(&raw).map_err(|e| Error(format!("{}: {e}", path.display())))
}

/// The most bytes a gzipped IDX file may expand to (MNIST's largest is 47 MB): a file that
/// would expand further is refused rather than filling memory.
pub const MAX_IDX_BYTES: u64 = 1 << 32;

/// An IDX file's bytes, gzipped or raw.
pub fn decode_idx(raw: &[u8]) -> std::result::Result<Idx, String> {
    decode_idx_within(raw, MAX_IDX_BYTES)
}

/// An IDX file's bytes, a gzipped one expanding to at most `limit` bytes (the fuzzer sets
/// a small limit so that a gzip bomb costs it milliseconds, not gigabytes).
pub fn decode_idx_within(raw: &[u8], limit: u64) -> std::result::Result<Idx, String> {
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return parse_idx(raw);
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(raw)
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("the gzip stream is corrupt or truncated ({e})"))?;
    if out.len() as u64 > limit {
        return Err(format!("the gzip stream expands past {limit} bytes"));
    }
    parse_idx(&out)
}

pub fn parse_idx(bytes: &[u8]) -> std::result::Result<Idx, String> {
    if bytes.len() < 4 {
        return Err(format!("not an IDX file: {} bytes is shorter than the 4-byte magic number", bytes.len()));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(format!(
            "not an IDX file: the magic number starts {:02x} {:02x}, expected 00 00",
            bytes[0], bytes[1]
        ));
    }
    if bytes[2] != 0x08 {
        return Err(format!(
            "unsupported IDX element type 0x{:02x}; only unsigned bytes (0x08) are supported",
            bytes[2]
        ));
    }
    let ndims = bytes[3] as usize;
    if !(1..=4).contains(&ndims) {
        return Err(format!("unsupported IDX rank {ndims}; expected 1 to 4 dimensions"));
    }
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(format!("truncated header: {ndims} dimensions need {header} bytes, the file has {}", bytes.len()));
    }
    let dims: Vec<usize> =
        (0..ndims).map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize).collect();
    let expected: u128 = dims.iter().map(|&d| d as u128).product();
    let found = (bytes.len() - header) as u128;
    if found < expected {
        return Err(format!("truncated: dimensions {dims:?} need {expected} bytes of data, found {found}"));
    }
    if found > expected {
        return Err(format!("{} unexpected bytes after the data of dimensions {dims:?}", found - expected));
    }
    Ok(Idx { dims, data: bytes[header..].to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            v.extend(d.to_be_bytes());
        }
        v.extend(data);
        v
    }

    #[test]
    fn parses_and_validates() {
        let ok = parse_idx(&idx(&[2, 3], &[1, 2, 3, 4, 5, 6])).unwrap();
        assert_eq!(ok.dims, [2, 3]);
        assert_eq!(ok.data, [1, 2, 3, 4, 5, 6]);
        assert!(parse_idx(&idx(&[2, 3], &[1, 2, 3]))
            .unwrap_err()
            .contains("truncated: dimensions [2, 3] need 6 bytes of data, found 3"));
        assert!(parse_idx(&idx(&[2], &[1, 2, 3])).unwrap_err().contains("1 unexpected bytes"));
        assert!(parse_idx(&[0, 0, 8]).unwrap_err().contains("shorter than"));
        assert!(parse_idx(&[1, 0, 8, 1]).unwrap_err().contains("not an IDX file"));
        assert!(parse_idx(&[0, 0, 0x0d, 1]).unwrap_err().contains("element type 0x0d"));
        assert!(parse_idx(&[0, 0, 8, 3, 0, 0]).unwrap_err().contains("truncated header"));
    }
}
