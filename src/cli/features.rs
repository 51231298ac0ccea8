use super::common::BackendArg;
use super::{CliResult, UserError};
use percept_compiler::layers::Layer;
use percept_runtime::data::preprocess::mnist_like;
use percept_runtime::viz::{render_features, LayerMaps};
use percept_runtime::Model;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model file (.nn).
    model: PathBuf,
    /// The trained weights (safetensors).
    #[arg(long)]
    weights: PathBuf,
    /// The image to look at (PNG or JPEG; prepared as `percept predict` prepares it).
    #[arg(long)]
    image: PathBuf,
    /// The directory to write to (created if needed): input.png, one picture per layer,
    /// filters.png (the first convolution's), overview.png, and activations.safetensors
    /// (the values drawn, by statement).
    #[arg(long)]
    out: PathBuf,
    /// The statements to show (names or indices, comma-separated) [default: every
    /// convolution, after its batch norm and activation if it has them, and every named
    /// statement; for a model without convolutions, every dense layer].
    #[arg(long, value_delimiter = ',')]
    layers: Vec<String>,
    #[arg(long, value_enum, default_value = "jit")]
    backend: BackendArg,
    /// Worker threads [default: the number of cores, divided among the processes of this machine under mpirun].
    #[arg(long)]
    threads: Option<usize>,
}

/// The image as the model's input, normalized as in training.
pub fn prepare_image(model: &Model, path: &Path) -> Result<Vec<f32>, UserError> {
    if !path.is_file() {
        return Err(UserError(format!("no such image: {}", path.display())));
    }
    let img = image::open(path).map_err(|e| UserError(format!("cannot read the image {}: {e}", path.display())))?;
    let shape = &model.spec.input.shape;
    let mut x = if shape[..] == [1, 28, 28] || shape[..] == [784] {
        mnist_like(&img)
    } else {
        percept_runtime::data::image_to_tensor(&img, shape)
            .map_err(|e| UserError(format!("{}: {e}", path.display())))?
    };
    let len = x.len();
    model.data_meta.norm.apply(&mut x, len);
    Ok(x)
}

/// The statements named on the command line, or the default choice, as layer indices.
pub fn choose_layers(model: &Model, names: &[String]) -> Result<Vec<usize>, UserError> {
    let spec = &model.spec;
    if names.is_empty() {
        // A convolution's maps as the next layer sees them: after the batch norm and
        // activation that follow it.
        let after = |i: usize| {
            let mut j = i;
            while spec.layers.get(j + 1).is_some_and(|n| {
                n.label.is_none()
                    && matches!(n.layer, Layer::BatchNorm { .. } | Layer::Activation(_) | Layer::Dropout { .. })
            }) {
                j += 1;
            }
            j
        };
        let mut convs: Vec<usize> = spec
            .layers
            .iter()
            .filter_map(|l| match l.layer {
                Layer::Conv2d { .. } => Some(after(l.index)),
                _ => l.label.is_some().then_some(l.index),
            })
            .collect();
        convs.sort_unstable();
        convs.dedup();
        if !convs.is_empty() {
            return Ok(convs);
        }
        return Ok(spec
            .layers
            .iter()
            .filter(|l| matches!(l.layer, Layer::Dense { .. } | Layer::Maxout { .. }))
            .map(|l| l.index)
            .collect());
    }
    let mut out = vec![];
    for n in names {
        let l = spec.find_layer(n).ok_or_else(|| {
            UserError(format!("no statement is named `{n}`; the statements are: {}", spec.layer_names()))
        })?;
        out.push(l.index);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

pub fn run(a: Args) -> CliResult {
    let mut model = super::common::trained_model(&a.model, &a.weights, a.backend, a.threads)?;
    let x = prepare_image(&model, &a.image)?;
    let chosen = choose_layers(&model, &a.layers)?;
    let fetch = model.forward(&x, None, &chosen)?;
    let layers: Vec<LayerMaps> = chosen
        .iter()
        .map(|&i| {
            let l = &model.spec.layers[i];
            let values =
                fetch.activations.iter().find(|(n, _)| *n == l.prefix).map(|(_, v)| v.clone()).unwrap_or_default();
            // Name a map shown after its activation by its convolution.
            let conv = (0..=i)
                .rev()
                .take_while(|&j| j == i || !matches!(model.spec.layers[j + 1].layer, Layer::Conv2d { .. }))
                .find(|&j| matches!(model.spec.layers[j].layer, Layer::Conv2d { .. }))
                .filter(|&j| j != i && l.label.is_none());
            let (name, title) = match conv {
                Some(j) => (model.spec.layers[j].tag(), format!("{} → {}", model.spec.layers[j].tag(), l.tag())),
                None => (l.tag(), l.tag()),
            };
            LayerMaps { name, title, shape: l.out_shape.clone(), values }
        })
        .collect();
    let first_conv = model.spec.layers.iter().find(|l| matches!(l.layer, Layer::Conv2d { .. }));
    let weights = first_conv.and_then(|l| {
        let p = l.param("weight")?;
        Some((model.store.get(percept_compiler::exec::SlotKind::Param, &p.name)?.to_vec(), p.shape.clone()))
    });
    let images =
        render_features(&x, &model.spec.input.shape, &layers, weights.as_ref().map(|(w, s)| (&w[..], &s[..])))?;
    std::fs::create_dir_all(&a.out).map_err(|e| UserError(format!("cannot create {}: {e}", a.out.display())))?;
    let save = |img: &image::RgbImage, name: &str| -> Result<PathBuf, UserError> {
        let p = a.out.join(name);
        img.save(&p).map_err(|e| UserError(format!("cannot write {}: {e}", p.display())))?;
        Ok(p)
    };
    let mut written = vec![save(&images.input, "input.png")?];
    for (name, img) in &images.layers {
        written.push(save(img, &format!("{name}.png"))?);
    }
    if let Some(f) = &images.filters {
        written.push(save(f, "filters.png")?);
    }
    written.push(save(&images.overview, "overview.png")?);
    // The values behind the pictures, before any normalization for display.
    let mut raw = percept_runtime::tensorfile::TensorFile::default();
    raw.tensors.push(percept_runtime::tensorfile::NamedTensor::f32("input", &model.spec.input.shape, x.clone()));
    for (&i, l) in chosen.iter().zip(&layers) {
        raw.tensors.push(percept_runtime::tensorfile::NamedTensor::f32(
            model.spec.layers[i].prefix.clone(),
            &l.shape,
            l.values.clone(),
        ));
    }
    let raw_path = a.out.join("activations.safetensors");
    raw.write(&raw_path)?;
    written.push(raw_path);
    for p in written {
        outln!("{}", p.display());
    }
    Ok(())
}
