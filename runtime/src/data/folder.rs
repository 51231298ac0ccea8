//! Folders of images, one folder per class: `DIR/<class>/*.png|jpg`, or `DIR/train/<class>/`
//! and `DIR/test/<class>/`. Images are converted to the model's channels (gray or RGB)
//! and resized to its height and width.

use super::{Dataset, Splits, Targets};
use crate::bail;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

fn is_image(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref(),
        Some("png" | "jpg" | "jpeg")
    )
}

fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error(format!("cannot list {}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    Ok(v)
}

/// Load one image as `shape` ([C, H, W] with C = 1 or 3, or a flat [H·W] gray input),
/// pixels in [0, 1].
pub fn load_image(path: &Path, shape: &[usize]) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).map_err(|e| Error(format!("cannot read the image {}: {e}", path.display())))?;
    let img = decode_image(&bytes).map_err(|e| Error(format!("cannot read the image {}: {e}", path.display())))?;
    image_to_tensor(&img, shape).map_err(|e| Error(format!("{}: {e}", path.display())))
}

/// Decode a PNG or JPEG, within the `image` crate's default limits (an image that would
/// take more than 512 MiB to decode is refused, not allocated).
pub fn decode_image(bytes: &[u8]) -> std::result::Result<image::DynamicImage, String> {
    decode_image_within(bytes, image::Limits::default())
}

/// Decode a PNG or JPEG within `limits` (the fuzzer's are small).
pub fn decode_image_within(bytes: &[u8], limits: image::Limits) -> std::result::Result<image::DynamicImage, String> {
    let mut reader =
        image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| e.to_string())?;
    reader.limits(limits);
    reader.decode().map_err(|e| e.to_string())
}

pub fn image_to_tensor(img: &image::DynamicImage, shape: &[usize]) -> std::result::Result<Vec<f32>, String> {
    let (c, h, w) = match *shape {
        [c, h, w] if c == 1 || c == 3 => (c, h, w),
        [n] => {
            let side = (n as f64).sqrt() as usize;
            if side * side != n {
                return Err(format!("a flat input of {n} values is not a square gray image"));
            }
            (1, side, side)
        }
        _ => return Err(format!("the model's input {shape:?} is not an image shape ([1|3, H, W])")),
    };
    let resized = img.resize_exact(w as u32, h as u32, image::imageops::FilterType::Triangle);
    Ok(if c == 1 {
        resized.to_luma8().pixels().map(|p| p.0[0] as f32 / 255.0).collect()
    } else {
        let rgb = resized.to_rgb8();
        let mut out = vec![0.0; 3 * h * w];
        for (i, p) in rgb.pixels().enumerate() {
            for ch in 0..3 {
                out[ch * h * w + i] = p.0[ch] as f32 / 255.0;
            }
        }
        out
    })
}

fn load_classes(dir: &Path, shape: &[usize], names: Option<&[String]>, what: &str) -> Result<Dataset> {
    let classes = subdirs(dir)?;
    let found: Vec<String> =
        classes.iter().map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect();
    if let Some(expected) = names {
        if expected != found.as_slice() {
            bail!("{} has the classes {found:?}, but the training set has {expected:?}", dir.display());
        }
    }
    let mut x = Vec::new();
    let mut labels = Vec::new();
    for (label, cdir) in classes.iter().enumerate() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(cdir)
            .map_err(|e| Error(format!("cannot list {}: {e}", cdir.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && is_image(p))
            .collect();
        files.sort();
        for f in files {
            x.extend(load_image(&f, shape)?);
            labels.push(label as u32);
        }
    }
    if labels.is_empty() {
        bail!("{} has no images: expected class folders holding .png or .jpg files", dir.display());
    }
    let sample_shape = shape.to_vec();
    Ok(Dataset {
        name: format!("{what} ({})", dir.display()),
        sample_shape,
        x,
        targets: Targets::Classes { labels, names: found },
    })
}

pub fn load_folders(dir: &Path, shape: &[usize]) -> Result<Splits> {
    let (train_dir, test_dir) = (dir.join("train"), dir.join("test"));
    if train_dir.is_dir() {
        let train = load_classes(&train_dir, shape, None, "images train")?;
        let test = if test_dir.is_dir() {
            Some(load_classes(&test_dir, shape, train.class_names(), "images test")?)
        } else {
            None
        };
        return Ok(Splits { train, val: None, test, source: format!("image folders in {}", dir.display()) });
    }
    if subdirs(dir)?.is_empty() {
        bail!(
            "{} holds neither MNIST IDX files (train-images-idx3-ubyte.gz, ...) nor class folders of images",
            dir.display()
        );
    }
    let train = load_classes(dir, shape, None, "images")?;
    Ok(Splits { train, val: None, test: None, source: format!("image folders in {}", dir.display()) })
}
