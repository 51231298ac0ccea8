use super::common::BackendArg;
use super::common::{load_data, stderr_is_terminal};
use super::features::prepare_image;
use super::{CliResult, UserError};
use percept_runtime::tensorfile::{Data, NamedTensor, TensorFile};
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Split {
    Train,
    Test,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model file (.nn).
    model: PathBuf,
    /// The trained weights (safetensors).
    #[arg(long)]
    weights: PathBuf,
    /// The statement whose output to extract (its name or index).
    #[arg(long)]
    layer: String,
    /// A data set to run (see `percept train --data`) [default: data/mnist, the bundled
    /// MNIST, unless image files are given instead].
    #[arg(long, conflicts_with = "images")]
    data: Option<String>,
    /// Which part of the data set.
    #[arg(long, value_enum, default_value = "test")]
    split: Split,
    /// At most this many samples (the first ones).
    #[arg(long)]
    limit: Option<usize>,
    /// Images to run instead of a data set.
    images: Vec<PathBuf>,
    /// Where to write: .safetensors (`features` [N, D] and `labels` [N]), .npy (features;
    /// labels beside it as FILE.labels.npy) or .csv (label, then the features).
    #[arg(long)]
    out: PathBuf,
    /// Samples per forward pass.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    #[arg(long, value_enum, default_value = "jit")]
    backend: BackendArg,
    /// Worker threads [default: the number of cores, divided among the processes of this machine under mpirun].
    #[arg(long)]
    threads: Option<usize>,
}

pub fn run(a: Args) -> CliResult {
    let mut model = super::common::trained_model(&a.model, &a.weights, a.backend, a.threads)?;
    let layer = model.spec.find_layer(&a.layer).cloned().ok_or_else(|| {
        UserError(format!("no statement is named `{}`; the statements are: {}", a.layer, model.spec.layer_names()))
    })?;
    let per: usize = model.spec.input.shape.iter().product();
    // The inputs (normalized as in training) and their labels.
    let data = match (&a.data, a.images.is_empty()) {
        (Some(d), _) => Some(d.clone()),
        (None, true) => Some("data/mnist".to_string()),
        (None, false) => None,
    };
    let (x, labels, what): (Vec<f32>, Option<Vec<i64>>, String) = if let Some(dir) = &data {
        let splits = load_data(dir, &model)?;
        let mut ds = match a.split {
            Split::Train => splits.train,
            Split::Test => splits.test.ok_or_else(|| UserError(format!("{dir} has no test set; use --split train")))?,
        };
        ds.check_fits(&model.spec.input.shape, model.spec.output_shape(), None)?;
        if let Some(n) = a.limit {
            ds = ds.subset(&(0..n.min(ds.len()) as u32).collect::<Vec<_>>(), ds.name.clone());
        }
        ds.apply_norm(&model.data_meta.norm);
        let labels = (0..ds.len()).map(|i| ds.label(i).map(|l| l as i64)).collect::<Option<Vec<_>>>();
        let name = ds.name.clone();
        (ds.x, labels, name)
    } else {
        let mut x = vec![];
        for p in &a.images {
            x.extend(prepare_image(&model, p)?);
        }
        (x, None, format!("{} image(s)", a.images.len()))
    };
    let n = x.len() / per;
    let dim: usize = layer.out_shape.iter().product();
    let bar = stderr_is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(n as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} samples  ETA {eta}").expect("template"),
        );
        b
    });
    let mut features = Vec::with_capacity(n * dim);
    for start in (0..n).step_by(a.batch.max(1)) {
        let end = (start + a.batch.max(1)).min(n);
        let fetch = model.forward(&x[start * per..end * per], None, &[layer.index])?;
        features.extend(fetch.activations.into_iter().next().expect("the exposed layer").1);
        if let Some(b) = &bar {
            b.set_position(end as u64);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let ext = a.out.extension().and_then(|e| e.to_str()).unwrap_or("");
    let fail = |e: &dyn std::fmt::Display| UserError(format!("cannot write {}: {e}", a.out.display()));
    match ext {
        "npy" => {
            percept_runtime::npy::write_npy(&a.out, &[n, dim], &features)?;
            if let Some(l) = &labels {
                let lf: Vec<f32> = l.iter().map(|&v| v as f32).collect();
                percept_runtime::npy::write_npy(&a.out.with_extension("labels.npy"), &[n], &lf)?;
            }
        }
        "csv" => {
            let mut f = std::io::BufWriter::new(std::fs::File::create(&a.out).map_err(|e| fail(&e))?);
            let header: Vec<String> =
                std::iter::once("label".to_string()).chain((0..dim).map(|i| format!("f{i}"))).collect();
            writeln!(f, "{}", header.join(",")).map_err(|e| fail(&e))?;
            for i in 0..n {
                let label = labels.as_ref().map_or_else(
                    || a.images.get(i).map(|p| csv_field(&p.display().to_string())).unwrap_or_default(),
                    |l| l[i].to_string(),
                );
                let row: Vec<String> = features[i * dim..(i + 1) * dim].iter().map(|v| v.to_string()).collect();
                writeln!(f, "{label},{}", row.join(",")).map_err(|e| fail(&e))?;
            }
            f.flush().map_err(|e| fail(&e))?;
        }
        _ => {
            let mut file = TensorFile::default();
            file.tensors.push(NamedTensor::f32("features", &[n, dim], features));
            if let Some(l) = labels {
                file.tensors.push(NamedTensor { name: "labels".into(), shape: vec![n], data: Data::I64(l) });
            }
            file.metadata.insert("model".into(), model.spec.name.clone());
            file.metadata.insert("layer".into(), layer.prefix.clone());
            file.metadata.insert("layer_shape".into(), format!("{:?}", layer.out_shape));
            file.metadata.insert("data".into(), what.clone());
            if !a.images.is_empty() {
                let files: Vec<String> = a.images.iter().map(|p| p.display().to_string()).collect();
                file.metadata.insert("files".into(), serde_json::to_string(&files).expect("strings"));
            }
            file.write(&a.out)?;
        }
    }
    outln!("wrote {n} × {dim} features of `{}` ({}) from {what} to {}", layer.prefix, layer.tag(), a.out.display());
    Ok(())
}

/// A CSV field as RFC 4180 writes it: quoted (inner quotes doubled) when it holds a comma,
/// a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
