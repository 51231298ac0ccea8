//! Data sets: MNIST (IDX files), CIFAR-10/100 (binary files), folders of images, and the
//! built-in XOR points; and the augmentation of training images (`augment`).
//!
//! Pixels are scaled to [0, 1]; an optional mean/std normalization is applied on top and
//! recorded in the weights' metadata so `eval` and `predict` preprocess the same way.

pub mod augment;
mod cifar;
mod folder;
mod norm;
pub use folder::{decode_image, decode_image_within, image_to_tensor, load_image};
pub use norm::Norm;
pub mod idx;
pub mod preprocess;

use crate::bail;
use crate::error::{Error, Result};
use crate::rng::{SplitMix, SPLIT};
use percept_compiler::layers::Loss;
use std::path::Path;

/// What a sample is labelled with.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    /// A class index per sample, with the classes' names.
    Classes { labels: Vec<u32>, names: Vec<String> },
    /// `width` float targets per sample.
    Values { values: Vec<f32>, width: usize },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// What it is, for messages: `MNIST train (data/mnist)`.
    pub name: String,
    /// Per-sample shape, channels first.
    pub sample_shape: Vec<usize>,
    /// All samples, row-major, pixels in [0, 1] (then normalized, if asked).
    pub x: Vec<f32>,
    pub targets: Targets,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.x.len() / self.sample_len().max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.x.is_empty()
    }

    pub fn sample_len(&self) -> usize {
        self.sample_shape.iter().product()
    }

    pub fn sample(&self, i: usize) -> &[f32] {
        let n = self.sample_len();
        &self.x[i * n..(i + 1) * n]
    }

    pub fn class_names(&self) -> Option<&[String]> {
        match &self.targets {
            Targets::Classes { names, .. } => Some(names),
            Targets::Values { .. } => None,
        }
    }

    pub fn label(&self, i: usize) -> Option<u32> {
        match &self.targets {
            Targets::Classes { labels, .. } => Some(labels[i]),
            Targets::Values { .. } => None,
        }
    }

    /// The samples at `indices`, in that order.
    pub fn subset(&self, indices: &[u32], name: String) -> Dataset {
        let n = self.sample_len();
        let mut x = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            x.extend_from_slice(self.sample(i as usize));
        }
        let targets = match &self.targets {
            Targets::Classes { labels, names } => {
                Targets::Classes { labels: indices.iter().map(|&i| labels[i as usize]).collect(), names: names.clone() }
            }
            Targets::Values { values, width } => Targets::Values {
                values: indices
                    .iter()
                    .flat_map(|&i| &values[i as usize * width..(i as usize + 1) * width])
                    .copied()
                    .collect(),
                width: *width,
            },
        };
        Dataset { name, sample_shape: self.sample_shape.clone(), x, targets }
    }

    /// Make every sample its own target (a reconstruction: an autoencoder learns to
    /// reproduce its input). Called after normalization, so the targets are what the
    /// model sees.
    pub fn inputs_as_targets(&mut self) {
        self.targets = Targets::Values { values: self.x.clone(), width: self.sample_len() };
    }

    /// Copy the inputs of `indices` into `out` (reused across batches).
    pub fn gather_x(&self, indices: &[u32], out: &mut Vec<f32>) {
        out.clear();
        for &i in indices {
            out.extend_from_slice(self.sample(i as usize));
        }
    }

    /// The targets of `indices` as the loss takes them: class indices for softmax
    /// cross-entropy, `k` values per sample otherwise (one-hot for classes).
    pub fn gather_targets(&self, indices: &[u32], loss: Loss, k: usize, out: &mut Vec<f32>) {
        out.clear();
        match (&self.targets, loss) {
            (Targets::Classes { labels, .. }, Loss::SoftmaxCrossEntropy) => {
                out.extend(indices.iter().map(|&i| labels[i as usize] as f32))
            }
            (Targets::Classes { labels, .. }, _) if k == 1 => {
                out.extend(indices.iter().map(|&i| labels[i as usize] as f32))
            }
            (Targets::Classes { labels, .. }, _) => {
                for &i in indices {
                    out.extend((0..k).map(|c| (labels[i as usize] as usize == c) as u8 as f32));
                }
            }
            (Targets::Values { values, width }, _) => {
                for &i in indices {
                    out.extend_from_slice(&values[i as usize * width..(i as usize + 1) * width]);
                }
            }
        }
    }

    /// Check that this data set fits a model: same number of input values per sample, and
    /// targets the loss can use. Called before training starts.
    pub fn check_fits(&self, input_shape: &[usize], output_shape: &[usize], loss: Option<Loss>) -> Result<()> {
        let want: usize = input_shape.iter().product();
        if self.sample_len() != want {
            bail!(
                "{} has samples of shape {:?} ({} values) but the model's input is {:?} ({} values)",
                self.name,
                self.sample_shape,
                self.sample_len(),
                input_shape,
                want
            );
        }
        let Some(loss) = loss else { return Ok(()) };
        let k: usize = output_shape.iter().product();
        match (&self.targets, loss) {
            (Targets::Classes { names, .. }, Loss::SoftmaxCrossEntropy) if k < names.len() => bail!(
                "{} has {} classes but the model's softmax_cross_entropy output has only {k}; end the model with `dense({})`",
                self.name,
                names.len(),
                names.len()
            ),
            (Targets::Classes { .. }, Loss::SoftmaxCrossEntropy) => Ok(()),
            (Targets::Classes { names, .. }, Loss::BinaryCrossEntropy) if !(k == 1 && names.len() == 2) && k != names.len() => bail!(
                "{} has {} classes, which do not fit binary_cross_entropy on {k} output{}: it needs 0/1 targets per output (2 classes for 1 output, or one output per class)",
                self.name,
                names.len(),
                if k == 1 { "" } else { "s" }
            ),
            (Targets::Classes { names, .. }, Loss::Mse) if k != names.len() => bail!(
                "{} has {} classes but mse compares {k} outputs with one-hot targets; the model needs {} outputs",
                self.name,
                names.len(),
                names.len()
            ),
            (Targets::Classes { .. }, _) => Ok(()),
            (Targets::Values { width, .. }, Loss::SoftmaxCrossEntropy) => bail!(
                "{} has {width} float target(s) per sample, but softmax_cross_entropy needs class labels",
                self.name
            ),
            (Targets::Values { width, .. }, _) if *width != k => bail!(
                "{} has {width} target(s) per sample but the model outputs {k}",
                self.name
            ),
            (Targets::Values { values, .. }, Loss::BinaryCrossEntropy) if values.iter().any(|&v| v != 0.0 && v != 1.0) => {
                bail!("{} has targets other than 0 and 1, which binary_cross_entropy cannot use", self.name)
            }
            _ => Ok(()),
        }
    }

    pub fn apply_norm(&mut self, norm: &Norm) {
        let len = self.sample_len();
        norm.apply(&mut self.x, len);
    }
}

/// A training set, an optional validation set held out of it, and an optional test set.
#[derive(Clone, Debug)]
pub struct Splits {
    pub train: Dataset,
    pub val: Option<Dataset>,
    pub test: Option<Dataset>,
    /// What was loaded, for the user: `MNIST from data/mnist`.
    pub source: String,
}

impl Splits {
    /// Hold out `n` training samples (a seeded random choice) as the validation set.
    pub fn hold_out(&mut self, n: usize, seed: u64) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        if n >= self.train.len() {
            bail!("--val {n} leaves no training samples: the training set has {}", self.train.len());
        }
        let mut order: Vec<u32> = (0..self.train.len() as u32).collect();
        let mut rng = SplitMix::stream(seed, SPLIT, 0);
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let (val, train) = order.split_at(n);
        let mut train = train.to_vec();
        train.sort_unstable();
        let mut val = val.to_vec();
        val.sort_unstable();
        let base = self.train.name.clone();
        self.val = Some(self.train.subset(&val, format!("{base} (validation, {n} held out)")));
        self.train = self.train.subset(&train, base);
        Ok(())
    }

    /// Every sample of every split its own target ([`Dataset::inputs_as_targets`]).
    pub fn inputs_as_targets(&mut self) {
        self.train.inputs_as_targets();
        for d in [&mut self.val, &mut self.test].into_iter().flatten() {
            d.inputs_as_targets();
        }
    }

    pub fn apply_norm(&mut self, norm: &Norm) {
        self.train.apply_norm(norm);
        for d in [&mut self.val, &mut self.test].into_iter().flatten() {
            d.apply_norm(norm);
        }
    }
}

/// The four XOR points, labelled 0/1: the course's perceptron story.
pub fn xor() -> Splits {
    let x = vec![0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0];
    let ds = Dataset {
        name: "XOR (the 4 built-in points)".into(),
        sample_shape: vec![2],
        x,
        targets: Targets::Values { values: vec![0.0, 1.0, 1.0, 0.0], width: 1 },
    };
    Splits { train: ds.clone(), val: None, test: Some(ds), source: "the built-in XOR data set".into() }
}

const MNIST_FILES: [&str; 4] =
    ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"];

fn find_idx(dir: &Path, stem: &str) -> Option<std::path::PathBuf> {
    [format!("{stem}.gz"), stem.to_string()].into_iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

/// Load the data at `source`: the built-in `xor` set (unless a directory of that name
/// exists), a directory of MNIST IDX files, or folders of images. `sample_shape` is the
/// model's input shape, which image folders are resized to.
pub fn load(source: &str, sample_shape: &[usize]) -> Result<Splits> {
    let dir = Path::new(source);
    if source == "xor" && !dir.is_dir() {
        return Ok(xor());
    }
    if !dir.exists() {
        bail!("the data directory `{source}` does not exist");
    }
    if !dir.is_dir() {
        bail!(
            "`{source}` is not a directory; --data takes a directory of MNIST IDX files, of CIFAR binary files or of \
             class folders, or `xor`"
        );
    }
    if find_idx(dir, MNIST_FILES[0]).is_some() || find_idx(dir, MNIST_FILES[2]).is_some() {
        return load_mnist(dir);
    }
    if cifar::is_cifar(dir) {
        return cifar::load_cifar(dir);
    }
    folder::load_folders(dir, sample_shape)
}

fn load_mnist_pair(dir: &Path, images: &str, labels: &str, name: String) -> Result<Dataset> {
    let missing = |stem: &str| Error(format!("{}: missing {stem}.gz (or {stem})", dir.display()));
    let ipath = find_idx(dir, images).ok_or_else(|| missing(images))?;
    let imgs = idx::read_idx(&ipath)?;
    let lpath = find_idx(dir, labels).ok_or_else(|| missing(labels))?;
    let labs = idx::read_idx(&lpath)?;
    if imgs.dims.len() != 3 {
        bail!("{}: expected images of 3 dimensions [count, rows, cols], found {:?}", ipath.display(), imgs.dims);
    }
    if labs.dims.len() != 1 {
        bail!("{}: expected labels of 1 dimension [count], found {:?}", lpath.display(), labs.dims);
    }
    if imgs.dims[0] != labs.dims[0] {
        bail!(
            "{} holds {} images but {} holds {} labels",
            ipath.display(),
            imgs.dims[0],
            lpath.display(),
            labs.dims[0]
        );
    }
    if let Some(bad) = labs.data.iter().position(|&l| l > 9) {
        bail!("{}: label {} of sample {bad} is not a digit 0-9", lpath.display(), labs.data[bad]);
    }
    Ok(Dataset {
        name,
        sample_shape: vec![1, imgs.dims[1], imgs.dims[2]],
        x: imgs.data.iter().map(|&p| p as f32 / 255.0).collect(),
        targets: Targets::Classes {
            labels: labs.data.iter().map(|&l| l as u32).collect(),
            names: (0..10).map(|d| d.to_string()).collect(),
        },
    })
}

fn load_mnist(dir: &Path) -> Result<Splits> {
    let d = dir.display();
    let train = load_mnist_pair(dir, MNIST_FILES[0], MNIST_FILES[1], format!("MNIST train ({d})"))?;
    let test = match find_idx(dir, MNIST_FILES[2]) {
        Some(_) => Some(load_mnist_pair(dir, MNIST_FILES[2], MNIST_FILES[3], format!("MNIST test ({d})"))?),
        None => None,
    };
    Ok(Splits { train, val: None, test, source: format!("MNIST IDX files in {d}") })
}
