//! Every reader of user files as one function over bytes: what the fuzz targets (`fuzz/`)
//! run, and what the regression tests replay for the inputs that once broke a reader.
//! Each must refuse bad input with an error; a panic is a bug.

use crate::model::Model;
use crate::tensorfile::TensorFile;
use crate::train::Trainer;
use percept_compiler::autodiff::{differentiate, GradOptions};
use percept_compiler::build::{forward_graph, BuildOptions};
use percept_compiler::ir::Mode;
use percept_compiler::SourceFile;

/// Model text through the front end: parse and check; then, for a model that checks, its
/// forward graphs (batches 1 and 2, both modes) and its training graph. Once a model
/// checks, only the batch-of-one batch-norm rule may refuse it.
pub fn model_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let src = SourceFile::new("fuzz.nn", text);
    let spec = match percept_compiler::parse_and_check(&src) {
        Ok(spec) => spec,
        Err(d) => {
            let _ = d.render(&src);
            return;
        }
    };
    let _ = spec.summary();
    for batch in [1, 2] {
        for opts in [BuildOptions::train(), BuildOptions::inference()] {
            let g = match forward_graph(&spec, batch, &opts) {
                Ok(g) => g,
                Err(d) if d.message.contains("batchnorm in training needs more than one value") => continue,
                Err(d) => panic!("a checked model failed to build: {}", d.render(&src)),
            };
            let _ = g.to_string();
            if opts.mode == Mode::Train && spec.loss.is_some() {
                let grads = differentiate(&g, &GradOptions { params: None, input_grad: true });
                let _ = grads.expect("autodiff of a checked model").to_string();
            }
        }
    }
}

/// The graph IR's text: parse; what parses prints back to text that parses to the same
/// graph.
pub fn graph_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(g) = percept_compiler::ir::parse::parse(text) {
        let printed = g.to_string();
        let again = percept_compiler::ir::parse::parse(&printed).expect("printed IR parses");
        assert_eq!(again.to_string(), printed, "print → parse → print");
    }
}

/// MNIST's IDX, gzipped or raw (a gzipped one may expand to 64 MiB here).
pub fn idx(data: &[u8]) {
    if let Ok(idx) = crate::data::idx::decode_idx_within(data, 64 << 20) {
        assert_eq!(idx.dims.iter().product::<usize>(), idx.data.len());
    }
}

/// NumPy's `.npy`.
pub fn npy(data: &[u8]) {
    if let Ok((shape, values)) = crate::npy::parse_npy(data) {
        assert_eq!(shape.iter().product::<usize>(), values.len());
    }
}

/// The small model the weights target loads into.
const WEIGHTS_MODEL: &str =
    "model m { input [1, 4, 4] conv2d(2, kernel: 3) batchnorm relu flatten dense(3) loss softmax_cross_entropy }";

/// A safetensors file as weights for a small model, and as a checkpoint to resume.
pub fn weights(data: &[u8]) {
    let Ok(file) = TensorFile::from_bytes(data, "fuzz") else { return };
    let mut model = Model::from_source("m.nn", WEIGHTS_MODEL).expect("the model checks");
    let _ = model.load_weights(&file, "fuzz");
    let mut model = Model::from_source("m.nn", WEIGHTS_MODEL).expect("the model checks");
    let _ = Trainer::resume(&mut model, &file, "fuzz");
}

/// Starting points for the weights target: the model's initialized weights, and a
/// checkpoint of it with Adam's state, so that mutations start from files that load.
pub fn weights_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut model = Model::from_source("m.nn", WEIGHTS_MODEL).expect("the model checks");
    crate::init::initialize(&model.spec.clone(), &mut model.store, crate::init::InitScheme::Pytorch, 1);
    let weights = model.weights().to_bytes().expect("weights serialize");
    let config = crate::train::TrainConfig { optimizer: crate::train::OptimizerKind::Adam, ..Default::default() };
    let trainer = Trainer::new(config).expect("a valid configuration");
    trainer.attach(&mut model).expect("the optimizer attaches");
    let checkpoint = trainer.checkpoint_file(&model).to_bytes().expect("a checkpoint serializes");
    vec![("weights.safetensors", weights), ("checkpoint.safetensors", checkpoint)]
}

/// A PNG or JPEG (of at most 64 MiB decoded here), decoded and made into inputs of two
/// shapes.
pub fn image(data: &[u8]) {
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(64 << 20);
    if let Ok(img) = crate::data::decode_image_within(data, limits) {
        for shape in [&[1, 28, 28][..], &[3, 8, 8]] {
            let t = crate::data::image_to_tensor(&img, shape).expect("an image shape");
            assert_eq!(t.len(), shape.iter().product::<usize>());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds load, so the fuzzer's mutations start past the format checks. With
    /// `PERCEPT_BLESS=1` they are (re)written to `fuzz/seeds/weights/`.
    #[test]
    fn weights_seeds_load() {
        let seeds = weights_seeds();
        let (_, weights_bytes) = &seeds[0];
        let (_, checkpoint_bytes) = &seeds[1];
        let mut model = Model::from_source("m.nn", WEIGHTS_MODEL).unwrap();
        model.load_weights(&TensorFile::from_bytes(weights_bytes, "seed").unwrap(), "seed").unwrap();
        let mut model = Model::from_source("m.nn", WEIGHTS_MODEL).unwrap();
        Trainer::resume(&mut model, &TensorFile::from_bytes(checkpoint_bytes, "seed").unwrap(), "seed").unwrap();
        if std::env::var_os("PERCEPT_BLESS").is_some() {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/weights");
            std::fs::create_dir_all(&dir).unwrap();
            for (name, bytes) in &seeds {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
        }
    }
}
