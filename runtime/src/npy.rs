//! NumPy `.npy` files (version 1/2/3, C order, little-endian f32/f64/u8/i64 read; f32
//! written): the format is a magic string, a Python-dict header, then the raw array.

use crate::bail;
use crate::error::{Error, Result};
use std::path::Path;

pub fn read_npy(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).map_err(|e| Error(format!("cannot read {}: {e}", path.display())))?;
    parse_npy(&bytes).map_err(|e| Error(format!("{}: {e}", path.display())))
}

fn header_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let start = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[start..].trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') { rest.find(')')? + 1 } else { rest.find([',', '}'])? };
    Some(rest[..end].trim())
}

pub fn parse_npy(bytes: &[u8]) -> std::result::Result<(Vec<usize>, Vec<f32>), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (no \\x93NUMPY magic)".into());
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize, 12),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = std::str::from_utf8(bytes.get(start..start + len).ok_or("truncated header")?)
        .map_err(|_| "header is not text")?;
    let descr = header_value(header, "descr").ok_or("header has no descr")?.trim_matches(['\'', '"']);
    if header_value(header, "fortran_order") != Some("False") {
        return Err("only C-order arrays are supported (fortran_order must be False)".into());
    }
    let shape_txt = header_value(header, "shape").ok_or("header has no shape")?;
    let shape = shape_txt
        .trim_matches(['(', ')'])
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| format!("bad shape {shape_txt}")))
        .collect::<std::result::Result<Vec<usize>, String>>()?;
    let n: usize = shape.iter().product();
    let data = &bytes[start + len..];
    let need = |size: usize| -> std::result::Result<(), String> {
        if data.len() == n * size {
            Ok(())
        } else {
            Err(format!("shape {shape:?} of {descr} needs {} bytes, found {}", n * size, data.len()))
        }
    };
    let values = match descr {
        "<f4" => {
            need(4)?;
            data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
        }
        "<f8" => {
            need(8)?;
            data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect()
        }
        "|u1" => {
            need(1)?;
            data.iter().map(|&b| b as f32).collect()
        }
        "<i8" => {
            need(8)?;
            data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32).collect()
        }
        other => return Err(format!("unsupported dtype {other}; use float32, float64, uint8 or int64")),
    };
    Ok((shape, values))
}

pub fn npy_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // Pad so the data starts on a 64-byte boundary, ending the header with a newline.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat(total.div_ceil(64) * 64 - total));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.bytes());
    out.extend(data.iter().flat_map(|v| v.to_le_bytes()));
    out
}

pub fn write_npy(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    if shape.iter().product::<usize>() != data.len() {
        bail!("internal: npy shape does not fit the data");
    }
    crate::tensorfile::write_atomic(path, &npy_bytes(shape, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let b = npy_bytes(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!((b.len() - 6 * 4) % 64, 0);
        assert_eq!(parse_npy(&b).unwrap(), (vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
        assert_eq!(parse_npy(&npy_bytes(&[4], &[1.0; 4])).unwrap().0, vec![4]);
        assert!(parse_npy(&b[..b.len() - 1]).unwrap_err().contains("needs 24 bytes"));
        assert!(parse_npy(b"hello world").is_err());
    }
}
