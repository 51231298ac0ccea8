//! Classify photos of digits with trained LeNet-5 weights, through a `network!` type.
//!
//!     cargo run --release -- train examples/lenet5.nn          # makes the weights
//!     cargo run --release --example classify_digit -- photo.png [more.png ...]
//!
//! Optionally `--weights FILE` (default runs/lenet5/weights.safetensors). Each photo is
//! made to look like MNIST (gray, inverted if the paper is light, cropped to its ink,
//! scaled into 20×20, centred by mass in 28×28) and normalized as in training.

use percept::runtime::data::preprocess::mnist_like;

percept::network! {
    model Lenet5 {
        input [1, 28, 28]
        conv2d(6, kernel: 5, padding: 2)
        relu
        maxpool(2)
        conv2d(16, kernel: 5)
        relu
        maxpool(2)
        flatten
        dense(120)
        relu
        dense(84)
        relu
        dense(10)
        loss softmax_cross_entropy
    }
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let weights = match args.iter().position(|a| a == "--weights") {
        Some(i) if i + 1 < args.len() => {
            let w = args.remove(i + 1);
            args.remove(i);
            w
        }
        _ => "runs/lenet5/weights.safetensors".to_string(),
    };
    if args.is_empty() {
        eprintln!("usage: classify_digit [--weights FILE] IMAGE...");
        std::process::exit(2);
    }
    if let Err(e) = run(&weights, &args) {
        eprintln!("error: {e}");
        if !std::path::Path::new(&weights).exists() {
            eprintln!("train the weights first: cargo run --release -- train examples/lenet5.nn");
        }
        std::process::exit(1);
    }
}

fn run(weights: &str, images: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let mut net = Lenet5::new(1)?;
    net.load(weights)?;
    let norm = net.model().data_meta.norm.clone();
    for path in images {
        let img = image::open(path).map_err(|e| format!("cannot read the image {path}: {e}"))?;
        let mut x = mnist_like(&img);
        norm.apply(&mut x, 784);
        let logits = net.forward(&x)?;
        let m = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = logits.iter().map(|v| (v - m).exp()).collect();
        let total: f32 = e.iter().sum();
        let mut ranked: Vec<(usize, f32)> = e.iter().map(|v| v / total).enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        let top: Vec<String> = ranked.iter().take(3).map(|(c, p)| format!("{c} ({:.1}%)", 100.0 * p)).collect();
        println!("{path}: {}", top.join(", "));
    }
    Ok(())
}
