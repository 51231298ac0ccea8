//! NumPy `.npy` files (versions 1–3): a magic string, a Python-dict header, then the raw
//! array. Read: float32/64, signed and unsigned integers of 1–8 bytes and booleans, either
//! byte order, C or Fortran order (reordered to C order), as f32. Written: f32, C order.
//! Anything else (float16, complex, object arrays, a header or size that does not add
//! up) is refused with what was found.

use crate::bail;
use crate::error::{Error, Result};
use std::path::Path;

pub fn read_npy(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).map_err(|e| Error(format!("cannot read {}: {e}", path.display())))?;
    parse_npy(&bytes).map_err(|e| Error(format!("{}: {e}", path.display())))
}

fn header_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let start = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header.get(start..)?.trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') { rest.find(')')? + 1 } else { rest.find([',', '}'])? };
    Some(rest[..end].trim())
}

/// How one element is stored: its kind (`f`, `i`, `u`, `b`), size in bytes, big-endian.
fn element(descr: &str) -> std::result::Result<(char, usize, bool), String> {
    let mut chars = descr.chars();
    let order = chars.next().ok_or("an empty descr")?;
    let big = match order {
        '<' | '|' | '=' => false,
        '>' => true,
        _ => return Err(format!("unsupported dtype {descr}")),
    };
    let kind = chars.next().ok_or_else(|| format!("unsupported dtype {descr}"))?;
    let size: usize = chars.as_str().parse().map_err(|_| format!("unsupported dtype {descr}"))?;
    match (kind, size) {
        ('f', 4 | 8) | ('i' | 'u', 1 | 2 | 4 | 8) | ('b', 1) => Ok((kind, size, big)),
        _ => Err(format!(
            "unsupported dtype {descr}; use float32 or float64, an integer type or bool (not float16, complex or objects)"
        )),
    }
}

/// One element's value as f32.
fn value((kind, size, big): (char, usize, bool), raw: &[u8]) -> f32 {
    let mut b = [0u8; 8];
    b[..size].copy_from_slice(raw);
    if big {
        b[..size].reverse();
    }
    let unsigned = u64::from_le_bytes(b);
    match (kind, size) {
        ('f', 4) => f32::from_bits(unsigned as u32),
        ('f', _) => f64::from_bits(unsigned) as f32,
        ('b', _) => (unsigned != 0) as u8 as f32,
        ('u', _) => unsigned as f32,
        // Sign-extend from `size` bytes.
        (_, _) => ((unsigned << (64 - 8 * size)) as i64 >> (64 - 8 * size)) as f32,
    }
}

pub fn parse_npy(bytes: &[u8]) -> std::result::Result<(Vec<usize>, Vec<f32>), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (no \\x93NUMPY magic)".into());
    }
    let (len, start): (usize, usize) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize, 12),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = std::str::from_utf8(bytes.get(start..start.saturating_add(len)).ok_or("truncated header")?)
        .map_err(|_| "header is not text")?;
    let descr = header_value(header, "descr").ok_or("header has no descr")?.trim_matches(['\'', '"']);
    let el = element(descr)?;
    let fortran = match header_value(header, "fortran_order") {
        Some("False") => false,
        Some("True") => true,
        _ => return Err("header has no fortran_order (True or False)".into()),
    };
    let shape_txt = header_value(header, "shape").ok_or("header has no shape")?;
    let shape = shape_txt
        .trim_matches(['(', ')'])
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| format!("bad shape {shape_txt}")))
        .collect::<std::result::Result<Vec<usize>, String>>()?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("shape {shape_txt} is too large"))?;
    let data = &bytes[start + len..];
    let need = n.checked_mul(el.1).ok_or_else(|| format!("shape {shape_txt} is too large"))?;
    if data.len() != need {
        return Err(format!("shape {shape:?} of {descr} needs {need} bytes, found {}", data.len()));
    }
    let stored: Vec<f32> = data.chunks_exact(el.1).map(|c| value(el, c)).collect();
    if !fortran || shape.len() < 2 {
        return Ok((shape, stored));
    }
    // Column-major: element (i0, i1, …) is at i0 + d0·(i1 + d1·(…)). Reorder to row-major.
    let mut values = vec![0.0f32; n];
    let mut idx = vec![0usize; shape.len()];
    for v in values.iter_mut() {
        let mut at = 0;
        for (k, &i) in idx.iter().enumerate().rev() {
            at = at * shape[k] + i;
        }
        *v = stored[at];
        for k in (0..shape.len()).rev() {
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
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

    /// Files numpy wrote (tests/fixtures/npy/make_npy.py): every value 0, 1, 2, … in C
    /// order (shifted, scaled or cast as the script says).
    #[test]
    fn files_written_by_numpy() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/npy");
        let read = |name: &str| read_npy(Path::new(&format!("{dir}/{name}.npy")));
        let count = |n: usize| (0..n).map(|i| i as f32).collect::<Vec<_>>();
        assert_eq!(read("f32_c_2x3").unwrap(), (vec![2, 3], count(6)));
        assert_eq!(read("f64_fortran_3x2x2").unwrap(), (vec![3, 2, 2], count(12).iter().map(|v| v / 4.0).collect()));
        assert_eq!(read("i64_c_5").unwrap(), (vec![5], vec![-2.0, -1.0, 0.0, 1.0, 2.0]));
        assert_eq!(read("i32_scalar").unwrap(), (vec![], vec![7.0]));
        assert_eq!(read("u8_c_4x4").unwrap(), (vec![4, 4], count(16)));
        assert_eq!(read("bool_c_5").unwrap(), (vec![5], vec![0.0, 1.0, 0.0, 1.0, 0.0]));
        assert_eq!(read("i16_fortran_2x3").unwrap(), (vec![2, 3], count(6).iter().map(|v| v - 3.0).collect()));
        assert_eq!(read("f32_big_endian_2x2").unwrap(), (vec![2, 2], count(4)));
        assert_eq!(read("f32_empty_0x3").unwrap(), (vec![0, 3], vec![]));
        for (name, why) in [("f16_refused", "<f2"), ("c64_refused", "<c8"), ("object_refused", "|O")] {
            let e = read(name).unwrap_err().0;
            assert!(e.contains("unsupported dtype") && e.contains(why), "{name}: {e}");
        }
    }
}
