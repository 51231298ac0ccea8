//! Feature maps and filters as pictures: each channel of a layer's output is one tile,
//! normalized on its own (its minimum black, its maximum white) and scaled up with
//! nearest-neighbour pixels so small maps stay readable; the overview puts the input and
//! every chosen layer side by side in depth order, each labelled with its name and shape.

use super::register_fonts;
use crate::error::{Error, Result};
use image::{imageops, GrayImage, Luma, Rgb, RgbImage};
use plotters::prelude::*;

/// One layer's output for one sample.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerMaps {
    /// The statement's name (`conv2d_0`, `stem`): the picture's file name.
    pub name: String,
    /// What the overview's label says (`conv2d_0 → relu_1`).
    pub title: String,
    /// Per-sample shape: [C, H, W], or [F] for a flat layer.
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

impl LayerMaps {
    /// (channels, height, width) of the maps; a flat [F] layer is one near-square map.
    pub fn maps(&self) -> (usize, usize, usize) {
        match self.shape[..] {
            [c, h, w] => (c, h, w),
            [f] => {
                let w = (f as f64).sqrt().ceil() as usize;
                (1, f.div_ceil(w.max(1)), w)
            }
            _ => (1, 1, self.values.len()),
        }
    }
}

const BACKGROUND: Rgb<u8> = Rgb([40, 40, 48]);
const GAP: u32 = 2;

/// One [h, w] map as gray pixels, min → 0, max → 255 (a constant map is mid-gray; NaN is
/// black), each value a `scale`×`scale` block.
pub fn tile(map: &[f32], h: usize, w: usize, scale: u32) -> GrayImage {
    let finite = map.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let small = GrayImage::from_fn(w as u32, h as u32, |x, y| {
        let v = map.get(y as usize * w + x as usize).copied().unwrap_or(lo);
        let g = if !v.is_finite() {
            0.0
        } else if hi > lo {
            (v - lo) / (hi - lo) * 255.0
        } else {
            128.0
        };
        Luma([g.round() as u8])
    });
    imageops::resize(&small, w as u32 * scale, h as u32 * scale, imageops::FilterType::Nearest)
}

/// The integer scale that makes a map of height `h` at least `min_px` tall.
fn scale_for(h: usize, w: usize, min_px: u32) -> u32 {
    (min_px / h.max(w).max(1) as u32).max(1)
}

/// All channels of a layer in a near-square grid of tiles.
pub fn feature_grid(maps: &LayerMaps, min_px: u32) -> RgbImage {
    let (c, h, w) = maps.maps();
    let scale = scale_for(h, w, min_px);
    let cols = (c as f64).sqrt().ceil() as u32;
    let rows = (c as u32).div_ceil(cols.max(1));
    let (tw, th) = (w as u32 * scale, h as u32 * scale);
    let mut out = RgbImage::from_pixel(cols * (tw + GAP) + GAP, rows * (th + GAP) + GAP, BACKGROUND);
    let mut plane = vec![0.0f32; h * w];
    for ch in 0..c {
        plane.iter_mut().for_each(|v| *v = f32::NAN);
        let src = &maps.values[(ch * h * w).min(maps.values.len())..((ch + 1) * h * w).min(maps.values.len())];
        plane[..src.len()].copy_from_slice(src);
        let t = tile(&plane[..], h, w, scale);
        let (x, y) = ((ch as u32 % cols) * (tw + GAP) + GAP, (ch as u32 / cols) * (th + GAP) + GAP);
        imageops::overlay(&mut out, &image::DynamicImage::ImageLuma8(t).to_rgb8(), x as i64, y as i64);
    }
    out
}

/// A convolution's filters [F, C, kh, kw]: one colour tile per filter for C = 3, else
/// one gray tile per (filter, channel) — filters in rows, channels in columns. Each
/// filter is normalized symmetrically: 0 is mid-gray, so sign is visible.
pub fn filters_grid(weights: &[f32], shape: &[usize], min_px: u32) -> RgbImage {
    let [f, c, kh, kw] = shape[..] else { return RgbImage::new(1, 1) };
    let scale = scale_for(kh, kw, min_px);
    let (tw, th) = (kw as u32 * scale, kh as u32 * scale);
    let per = c * kh * kw;
    // One tile per filter (colour, or gray for one channel) in a near-square grid; with
    // several gray channels, filters in rows and channels in columns.
    let per_filter = c == 3 || c == 1;
    let (cols, rows) = if per_filter {
        let cols = (f as f64).sqrt().ceil() as u32;
        (cols, (f as u32).div_ceil(cols))
    } else {
        (c as u32, f as u32)
    };
    let mut out = RgbImage::from_pixel(cols * (tw + GAP) + GAP, rows * (th + GAP) + GAP, BACKGROUND);
    for fi in 0..f {
        let w = &weights[fi * per..(fi + 1) * per];
        let m = w.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
        let gray = |v: f32| ((v / m * 0.5 + 0.5) * 255.0).round().clamp(0.0, 255.0) as u8;
        if c == 3 {
            let t = RgbImage::from_fn(kw as u32, kh as u32, |x, y| {
                let at = |ch: usize| w[(ch * kh + y as usize) * kw + x as usize];
                Rgb([gray(at(0)), gray(at(1)), gray(at(2))])
            });
            let t = imageops::resize(&t, tw, th, imageops::FilterType::Nearest);
            let (x, y) = ((fi as u32 % cols) * (tw + GAP) + GAP, (fi as u32 / cols) * (th + GAP) + GAP);
            imageops::overlay(&mut out, &t, x as i64, y as i64);
        } else if c == 1 {
            let t = GrayImage::from_fn(kw as u32, kh as u32, |x, y| Luma([gray(w[y as usize * kw + x as usize])]));
            let t = imageops::resize(&t, tw, th, imageops::FilterType::Nearest);
            let (x, y) = ((fi as u32 % cols) * (tw + GAP) + GAP, (fi as u32 / cols) * (th + GAP) + GAP);
            imageops::overlay(&mut out, &image::DynamicImage::ImageLuma8(t).to_rgb8(), x as i64, y as i64);
        } else {
            for ci in 0..c {
                let t = GrayImage::from_fn(kw as u32, kh as u32, |x, y| {
                    Luma([gray(w[(ci * kh + y as usize) * kw + x as usize])])
                });
                let t = imageops::resize(&t, tw, th, imageops::FilterType::Nearest);
                let (x, y) = (ci as u32 * (tw + GAP) + GAP, fi as u32 * (th + GAP) + GAP);
                imageops::overlay(&mut out, &image::DynamicImage::ImageLuma8(t).to_rgb8(), x as i64, y as i64);
            }
        }
    }
    out
}

/// Everything `percept features` writes.
pub struct FeatureImages {
    pub input: RgbImage,
    /// (statement name, grid) per chosen layer, in depth order.
    pub layers: Vec<(String, RgbImage)>,
    pub filters: Option<RgbImage>,
    pub overview: RgbImage,
}

fn shape_text(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(", "))
}

/// Render the input, each layer's grid and (if given) the first convolution's filters,
/// and the overview: panels of equal height, side by side, labelled.
pub fn render_features(
    input: &[f32],
    input_shape: &[usize],
    layers: &[LayerMaps],
    filters: Option<(&[f32], &[usize])>,
) -> Result<FeatureImages> {
    let input_maps =
        LayerMaps { name: "input".into(), title: "input".into(), shape: input_shape.to_vec(), values: input.to_vec() };
    let input_img = if input_shape.first() == Some(&3) && input_shape.len() == 3 {
        let (h, w) = (input_shape[1], input_shape[2]);
        let (lo, hi) = input.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let n = |v: f32| if hi > lo { ((v - lo) / (hi - lo) * 255.0).round() as u8 } else { 128 };
        let img = RgbImage::from_fn(w as u32, h as u32, |x, y| {
            let at = |c: usize| input[(c * h + y as usize) * w + x as usize];
            Rgb([n(at(0)), n(at(1)), n(at(2))])
        });
        let s = scale_for(h, w, 112);
        imageops::resize(&img, w as u32 * s, h as u32 * s, imageops::FilterType::Nearest)
    } else {
        feature_grid(&input_maps, 112)
    };
    let grids: Vec<(String, RgbImage)> = layers.iter().map(|l| (l.name.clone(), feature_grid(l, 48))).collect();
    let filters = filters.map(|(w, s)| filters_grid(w, s, 64));

    // The overview: every panel scaled (nearest) to one height, a label above each.
    const PANEL_H: u32 = 220;
    const LABEL_H: u32 = 28;
    let mut panels: Vec<(String, RgbImage)> = vec![(format!("input {}", shape_text(input_shape)), input_img.clone())];
    for (l, (_, g)) in layers.iter().zip(&grids) {
        panels.push((format!("{} {}", l.title, shape_text(&l.shape)), g.clone()));
    }
    let scaled: Vec<(String, RgbImage)> = panels
        .into_iter()
        .map(|(label, img)| {
            let w = (img.width() as f64 * PANEL_H as f64 / img.height().max(1) as f64).round().max(1.0) as u32;
            (label, imageops::resize(&img, w, PANEL_H, imageops::FilterType::Nearest))
        })
        .collect();
    let widths: Vec<u32> = scaled.iter().map(|(label, img)| img.width().max(8 * label.len() as u32)).collect();
    let total_w = widths.iter().sum::<u32>() + 16 * (scaled.len() as u32 + 1);
    let total_h = LABEL_H + PANEL_H + 24;
    let mut overview = RgbImage::from_pixel(total_w, total_h, Rgb([24, 24, 30]));
    let mut x = 16u32;
    let mut label_at = vec![];
    for ((label, img), w) in scaled.iter().zip(&widths) {
        imageops::overlay(&mut overview, img, x as i64, (LABEL_H + 8) as i64);
        label_at.push((label.clone(), x));
        x += w + 16;
    }
    register_fonts();
    let (w, h) = overview.dimensions();
    let mut raw = overview.into_raw();
    {
        let root = BitMapBackend::with_buffer(&mut raw, (w, h)).into_drawing_area();
        let style = TextStyle::from(("sans-serif", 16).into_font()).color(&RGBColor(235, 235, 235));
        for (label, x) in &label_at {
            root.draw_text(label, &style, (*x as i32, 8)).map_err(|e| Error(format!("cannot draw text: {e}")))?;
        }
        root.present().map_err(|e| Error(format!("cannot draw text: {e}")))?;
    }
    let overview = RgbImage::from_raw(w, h, raw).ok_or_else(|| Error::new("overview buffer size"))?;
    Ok(FeatureImages { input: input_img, layers: grids, filters, overview })
}
