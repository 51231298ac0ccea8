//! safetensors files: reading and atomic writing of named tensors with metadata.

use crate::bail;
use crate::error::{Error, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Data,
}

impl NamedTensor {
    pub fn f32(name: impl Into<String>, shape: &[usize], data: Vec<f32>) -> NamedTensor {
        NamedTensor { name: name.into(), shape: shape.to_vec(), data: Data::F32(data) }
    }

    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            Data::F32(v) => Some(v),
            Data::I64(_) => None,
        }
    }
}

/// A set of tensors and string metadata, as stored in one safetensors file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TensorFile {
    pub tensors: Vec<NamedTensor>,
    pub metadata: HashMap<String, String>,
}

/// safetensors writes the metadata map in hash order, so two writes of one file differ;
/// rewrite the header with the metadata's keys sorted, so equal files are equal bytes (a
/// resumed run's weights compare with `cmp`). The header keeps its length: the same
/// entries in another order.
fn sorted_metadata(mut bytes: Vec<u8>) -> Vec<u8> {
    let Some(n) = bytes.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize) else {
        return bytes;
    };
    let Some(Ok(header)) =
        bytes.get(8..8 + n).map(serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>)
    else {
        return bytes;
    };
    let sorted: serde_json::Map<String, serde_json::Value> = header
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::Object(meta) if k == "__metadata__" => {
                let mut entries: Vec<_> = meta.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                (k, serde_json::Value::Object(entries.into_iter().collect()))
            }
            v => (k, v),
        })
        .collect();
    match serde_json::to_vec(&sorted) {
        Ok(text) if text.len() <= n => {
            bytes[8..8 + text.len()].copy_from_slice(&text);
            bytes[8 + text.len()..8 + n].fill(b' ');
            bytes
        }
        _ => bytes,
    }
}

impl TensorFile {
    pub fn get(&self, name: &str) -> Option<&NamedTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let bytes: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|t| match &t.data {
                Data::F32(v) => {
                    (t.name.clone(), Dtype::F32, t.shape.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect())
                }
                Data::I64(v) => {
                    (t.name.clone(), Dtype::I64, t.shape.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect())
                }
            })
            .collect();
        let views = bytes
            .iter()
            .map(|(n, d, s, b)| Ok((n.as_str(), TensorView::new(*d, s.clone(), b).map_err(|e| Error(e.to_string()))?)))
            .collect::<Result<Vec<_>>>()?;
        let meta = if self.metadata.is_empty() { None } else { Some(self.metadata.clone()) };
        let bytes = safetensors::serialize(views, meta).map_err(|e| Error(format!("cannot serialize tensors: {e}")))?;
        Ok(sorted_metadata(bytes))
    }

    /// Write atomically: a temporary file in the same directory, flushed, renamed over
    /// the target, and the directory flushed, so a crash or power cut never leaves a
    /// half-written file, nor loses the rename.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_bytes()?)
    }

    pub fn from_bytes(bytes: &[u8], what: &str) -> Result<TensorFile> {
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| Error(format!("{what} is not a valid safetensors file: {e}")))?;
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| Error(format!("{what}: {e}")))?;
        let mut tensors = Vec::new();
        let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
        names.sort();
        for name in names {
            let v = st.tensor(&name).map_err(|e| Error(format!("{what}: {e}")))?;
            let raw = v.data();
            let data = match v.dtype() {
                Dtype::F32 => {
                    Data::F32(raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
                }
                Dtype::F64 => {
                    Data::F32(raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect())
                }
                Dtype::I64 => {
                    Data::I64(raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect())
                }
                Dtype::I32 => {
                    Data::I64(raw.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64).collect())
                }
                d => bail!("{what}: tensor `{name}` has dtype {d:?}; Percept reads F32, F64, I64 and I32"),
            };
            tensors.push(NamedTensor { name, shape: v.shape().to_vec(), data });
        }
        Ok(TensorFile { tensors, metadata: meta.metadata().clone().unwrap_or_default() })
    }

    pub fn read(path: &Path) -> Result<TensorFile> {
        let bytes = std::fs::read(path).map_err(|e| Error(format!("cannot read {}: {e}", path.display())))?;
        TensorFile::from_bytes(&bytes, &path.display().to_string())
    }
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error(format!("cannot create {}: {e}", dir.display())))?;
    let name = path.file_name().ok_or_else(|| Error(format!("{} is not a file path", path.display())))?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename is durable once the directory's entry is on disk.
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error(format!("cannot write {}: {e}", path.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Equal files are equal bytes, whatever order the metadata map iterates in, and they
    /// read back the same.
    #[test]
    fn equal_files_serialize_to_equal_bytes() {
        let file = |keys: &[&str]| TensorFile {
            tensors: vec![NamedTensor::f32("w", &[2], vec![1.0, 2.0]), NamedTensor::f32("b", &[1], vec![3.0])],
            metadata: keys.iter().map(|k| (k.to_string(), format!("value of {k}"))).collect(),
        };
        let keys: Vec<String> = (0..40).map(|i| format!("key{i}")).collect();
        let mut keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let a = file(&keys).to_bytes().unwrap();
        keys.reverse();
        let b = file(&keys).to_bytes().unwrap();
        assert_eq!(a, b);
        let back = TensorFile::from_bytes(&a, "test").unwrap();
        assert_eq!(back.metadata, file(&keys).metadata);
        assert_eq!(back.get("w").unwrap().as_f32(), Some(&[1.0, 2.0][..]));
    }
}
