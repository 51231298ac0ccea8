//! CIFAR-10 and CIFAR-100 in their binary format (Krizhevsky, 2009), as the archives
//! `cifar-10-binary.tar.gz` and `cifar-100-binary.tar.gz` unpack:
//!
//! - CIFAR-10: `data_batch_1.bin` … `data_batch_5.bin` and `test_batch.bin`, each record
//!   one label byte (0–9) and 3,072 pixel bytes; class names in `batches.meta.txt`.
//! - CIFAR-100: `train.bin` and `test.bin`, each record a coarse label byte (0–19), a fine
//!   label byte (0–99) and 3,072 pixel bytes; Percept trains on the fine labels, named in
//!   `fine_label_names.txt`.
//!
//! The pixels of a record are the red, green and blue planes of a 32×32 image, each
//! row-major: exactly a [3, 32, 32] sample, channels first. Every file's size and every
//! label is checked.

use super::{Dataset, Splits, Targets};
use crate::bail;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

const PIXELS: usize = 3 * 32 * 32;
const CIFAR10_NAMES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// Which of the two a directory holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Cifar10,
    Cifar100,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Cifar10 => "CIFAR-10",
            Kind::Cifar100 => "CIFAR-100",
        }
    }

    /// Label bytes before the pixels of a record.
    fn label_bytes(self) -> usize {
        match self {
            Kind::Cifar10 => 1,
            Kind::Cifar100 => 2,
        }
    }

    fn classes(self) -> usize {
        match self {
            Kind::Cifar10 => 10,
            Kind::Cifar100 => 100,
        }
    }
}

/// The directory holding the binary files: `dir` itself or the folder the archive
/// unpacks to inside it, with which of the two it is.
fn locate(dir: &Path) -> Option<(PathBuf, Kind)> {
    for d in [dir.to_path_buf(), dir.join("cifar-10-batches-bin"), dir.join("cifar-100-binary")] {
        if d.join("data_batch_1.bin").is_file() || d.join("test_batch.bin").is_file() {
            return Some((d, Kind::Cifar10));
        }
        if d.join("train.bin").is_file() || d.join("test.bin").is_file() {
            return Some((d, Kind::Cifar100));
        }
    }
    None
}

/// Whether `dir` holds CIFAR-10 or CIFAR-100 binary files.
pub fn is_cifar(dir: &Path) -> bool {
    locate(dir).is_some()
}

/// Append one file's records to `x` and `labels`.
fn read_records(path: &Path, kind: Kind, x: &mut Vec<f32>, labels: &mut Vec<u32>) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| Error(format!("cannot read {}: {e}", path.display())))?;
    let record = kind.label_bytes() + PIXELS;
    if bytes.is_empty() || bytes.len() % record != 0 {
        bail!(
            "{}: {} bytes is not a whole number of {} records of {record} bytes ({} label byte(s) and 3,072 pixels): \
             truncated or not a {} binary file",
            path.display(),
            bytes.len(),
            kind.name(),
            kind.label_bytes(),
            kind.name()
        );
    }
    for (i, r) in bytes.chunks_exact(record).enumerate() {
        // CIFAR-100: the fine label is the second byte.
        let label = r[kind.label_bytes() - 1];
        if usize::from(label) >= kind.classes() {
            bail!(
                "{}: record {i} has label {label}, but {} has {} classes",
                path.display(),
                kind.name(),
                kind.classes()
            );
        }
        labels.push(u32::from(label));
        x.extend(r[kind.label_bytes()..].iter().map(|&p| f32::from(p) / 255.0));
    }
    Ok(())
}

/// The class names from the archive's text file, else CIFAR-10's well-known ones or
/// CIFAR-100's indices.
fn class_names(dir: &Path, kind: Kind) -> Result<Vec<String>> {
    let file = dir.join(match kind {
        Kind::Cifar10 => "batches.meta.txt",
        Kind::Cifar100 => "fine_label_names.txt",
    });
    if let Ok(text) = std::fs::read_to_string(&file) {
        let names: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
        if names.len() != kind.classes() {
            bail!("{}: {} class names, but {} has {}", file.display(), names.len(), kind.name(), kind.classes());
        }
        return Ok(names);
    }
    Ok(match kind {
        Kind::Cifar10 => CIFAR10_NAMES.iter().map(|s| s.to_string()).collect(),
        Kind::Cifar100 => (0..100).map(|i| i.to_string()).collect(),
    })
}

fn dataset(dir: &Path, kind: Kind, files: &[PathBuf], split: &str, names: &[String]) -> Result<Dataset> {
    let (mut x, mut labels) = (Vec::new(), Vec::new());
    for f in files {
        read_records(f, kind, &mut x, &mut labels)?;
    }
    Ok(Dataset {
        name: format!("{} {split} ({})", kind.name(), dir.display()),
        sample_shape: vec![3, 32, 32],
        x,
        targets: Targets::Classes { labels, names: names.to_vec() },
    })
}

/// Load the training files (all of them that exist) and the test file, if present.
pub fn load_cifar(dir: &Path) -> Result<Splits> {
    let (root, kind) = locate(dir).ok_or_else(|| Error(format!("{}: no CIFAR binary files", dir.display())))?;
    let names = class_names(&root, kind)?;
    let (train, test) = match kind {
        Kind::Cifar10 => {
            let train: Vec<PathBuf> =
                (1..=5).map(|i| root.join(format!("data_batch_{i}.bin"))).filter(|p| p.is_file()).collect();
            (train, root.join("test_batch.bin"))
        }
        Kind::Cifar100 => {
            (vec![root.join("train.bin")].into_iter().filter(|p| p.is_file()).collect(), root.join("test.bin"))
        }
    };
    if train.is_empty() {
        bail!(
            "{}: {} test data but no training files ({})",
            root.display(),
            kind.name(),
            if kind == Kind::Cifar10 { "data_batch_1.bin … data_batch_5.bin" } else { "train.bin" }
        );
    }
    let train_set = dataset(&root, kind, &train, "train", &names)?;
    let test_set = if test.is_file() { Some(dataset(&root, kind, &[test], "test", &names)?) } else { None };
    Ok(Splits {
        train: train_set,
        val: None,
        test: test_set,
        source: format!("{} from {}", kind.name(), root.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("percept-cifar-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// `n` records of `kind`, record i labelled i % classes with pixel bytes (i + j) % 256.
    fn records(kind: Kind, n: usize) -> Vec<u8> {
        let mut v = vec![];
        for i in 0..n {
            if kind == Kind::Cifar100 {
                v.push((i % 20) as u8);
            }
            v.push((i % kind.classes()) as u8);
            v.extend((0..PIXELS).map(|j| ((i + j) % 256) as u8));
        }
        v
    }

    #[test]
    fn reads_both_formats_channels_first_with_their_labels() {
        let d = tmp("ten").join("cifar-10-batches-bin");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("data_batch_1.bin"), records(Kind::Cifar10, 3)).unwrap();
        std::fs::write(d.join("data_batch_2.bin"), records(Kind::Cifar10, 2)).unwrap();
        std::fs::write(d.join("test_batch.bin"), records(Kind::Cifar10, 4)).unwrap();
        let s = load_cifar(d.parent().unwrap()).unwrap();
        assert_eq!((s.train.len(), s.test.as_ref().unwrap().len()), (5, 4));
        assert_eq!(s.train.sample_shape, [3, 32, 32]);
        assert_eq!(s.train.label(4), Some(1));
        assert_eq!(s.train.class_names().unwrap()[9], "truck");
        // Sample 1's green plane starts at byte 1024 of its pixels: (1 + 1024) % 256 / 255.
        assert_eq!(s.train.sample(1)[1024], 1.0 / 255.0);

        let d = tmp("hundred");
        std::fs::write(d.join("train.bin"), records(Kind::Cifar100, 120)).unwrap();
        std::fs::write(d.join("fine_label_names.txt"), (0..100).map(|i| format!("c{i}\n")).collect::<String>())
            .unwrap();
        let s = load_cifar(&d).unwrap();
        assert!(s.test.is_none());
        assert_eq!(
            (s.train.len(), s.train.label(101), s.train.class_names().unwrap()[3].as_str()),
            (120, Some(1), "c3")
        );
    }

    #[test]
    fn truncated_files_and_bad_labels_are_errors_naming_the_file() {
        let d = tmp("bad");
        let mut r = records(Kind::Cifar10, 2);
        r.pop();
        std::fs::write(d.join("data_batch_1.bin"), &r).unwrap();
        let e = load_cifar(&d).unwrap_err().0;
        assert!(e.contains("data_batch_1.bin: 6145 bytes is not a whole number of CIFAR-10 records"), "{e}");
        let mut r = records(Kind::Cifar10, 2);
        r[3073] = 10;
        std::fs::write(d.join("data_batch_1.bin"), &r).unwrap();
        let e = load_cifar(&d).unwrap_err().0;
        assert!(e.contains("record 1 has label 10, but CIFAR-10 has 10 classes"), "{e}");
        std::fs::remove_file(d.join("data_batch_1.bin")).unwrap();
        std::fs::write(d.join("test_batch.bin"), records(Kind::Cifar10, 1)).unwrap();
        assert!(load_cifar(&d).unwrap_err().0.contains("no training files"));
    }
}
