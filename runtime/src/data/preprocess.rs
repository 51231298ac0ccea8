//! Making a photo of a digit look like MNIST: grayscale, ink bright on dark (inverted
//! when the background is light), cropped to its ink, scaled into 20×20 keeping the
//! aspect ratio, and centred by its centre of mass in 28×28 — how MNIST itself was made.

use image::{imageops::FilterType, DynamicImage, GrayImage, Luma};

/// A 28×28 image, row-major, ink in (0, 1], background 0.
pub fn mnist_like(img: &DynamicImage) -> Vec<f32> {
    let gray = img.to_luma8();
    let (w, h) = gray.dimensions();
    let mut px: Vec<f32> = gray.pixels().map(|p| p.0[0] as f32 / 255.0).collect();
    // The background is what the border mostly shows.
    let border: Vec<f32> = (0..w)
        .flat_map(|x| [px[x as usize], px[((h - 1) * w + x) as usize]])
        .chain((0..h).flat_map(|y| [px[(y * w) as usize], px[(y * w + w - 1) as usize]]))
        .collect();
    let background = border.iter().sum::<f32>() / border.len().max(1) as f32;
    if background > 0.5 {
        px.iter_mut().for_each(|v| *v = 1.0 - *v);
    }
    let bg = if background > 0.5 { 1.0 - background } else { background };
    // Ink: clearly brighter than the background.
    let max = px.iter().cloned().fold(0.0f32, f32::max);
    let threshold = bg + 0.35 * (max - bg);
    for v in px.iter_mut() {
        *v = ((*v - bg) / (max - bg).max(1e-6)).clamp(0.0, 1.0);
    }
    let ink = |x: u32, y: u32| px[(y * w + x) as usize] * (max - bg) + bg > threshold;
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    for y in 0..h {
        for x in 0..w {
            if ink(x, y) {
                x0 = x0.min(x);
                y0 = y0.min(y);
                x1 = x1.max(x);
                y1 = y1.max(y);
            }
        }
    }
    if x0 > x1 {
        return vec![0.0; 28 * 28];
    }
    let (cw, ch) = (x1 - x0 + 1, y1 - y0 + 1);
    let crop = GrayImage::from_fn(cw, ch, |x, y| Luma([(px[((y + y0) * w + x + x0) as usize] * 255.0).round() as u8]));
    let scale = 20.0 / cw.max(ch) as f32;
    let (sw, sh) = (((cw as f32 * scale).round() as u32).max(1), ((ch as f32 * scale).round() as u32).max(1));
    let small = image::imageops::resize(&crop, sw, sh, FilterType::Lanczos3);
    // Centre of mass of the scaled digit.
    let (mut mass, mut mx, mut my) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y, p) in small.enumerate_pixels() {
        let v = p.0[0] as f32;
        mass += v;
        mx += v * x as f32;
        my += v * y as f32;
    }
    let (cx, cy) = if mass > 0.0 { (mx / mass, my / mass) } else { (sw as f32 / 2.0, sh as f32 / 2.0) };
    let ox = (14.0 - cx).round().clamp(0.0, (28 - sw) as f32) as u32;
    let oy = (14.0 - cy).round().clamp(0.0, (28 - sh) as f32) as u32;
    let mut out = vec![0.0; 28 * 28];
    for (x, y, p) in small.enumerate_pixels() {
        out[((y + oy) * 28 + x + ox) as usize] = p.0[0] as f32 / 255.0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dark_digit_on_white_paper_becomes_a_centred_bright_digit() {
        // A 60×90 white photo with a black vertical bar off to the left.
        let img = GrayImage::from_fn(60, 90, |x, y| {
            Luma([if (10..18).contains(&x) && (20..70).contains(&y) { 10 } else { 240 }])
        });
        let out = mnist_like(&DynamicImage::ImageLuma8(img));
        assert_eq!(out.len(), 784);
        let mass: f32 = out.iter().sum();
        let cx: f32 = out.iter().enumerate().map(|(i, v)| v * (i % 28) as f32).sum::<f32>() / mass;
        let cy: f32 = out.iter().enumerate().map(|(i, v)| v * (i / 28) as f32).sum::<f32>() / mass;
        assert!((cx - 14.0).abs() < 1.0 && (cy - 14.0).abs() < 1.0, "centre of mass ({cx}, {cy})");
        // The bar is 50 pixels tall: scaled to 20 rows.
        let rows = (0..28).filter(|y| (0..28).any(|x| out[y * 28 + x] > 0.5)).count();
        assert!((19..=21).contains(&rows), "{rows} rows of ink");
        assert_eq!(out[0], 0.0, "the background is dark");
    }
}
