//! Training-time augmentation of image samples: random translations, pad-and-crop,
//! horizontal flips and small rotations, applied in the order given to each training
//! sample as its mini-batch is gathered (never to validation or test data).
//!
//! Every draw is counter-based, like the rest of the randomness: a sample's changes are a
//! pure function of (seed, epoch, sample index), so a resumed run needs no generator
//! state, every thread count and process count gives the same bits, and an epoch sees
//! each sample changed differently from the last.

use crate::rng::{SplitMix, AUGMENT};
use std::fmt;

/// One augmentation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AugmentOp {
    /// Translate by (dy, dx), each uniform in −p..=p, filling with the background.
    Shift(usize),
    /// Pad by p on every side and crop back at a uniform position (torchvision's
    /// `RandomCrop(size, padding=p)`): the same images as `Shift(p)`, under its usual name.
    Crop(usize),
    /// Mirror left–right with probability ½.
    Flip,
    /// Rotate about the centre by an angle uniform in −d..d degrees, bilinear, filling
    /// with the background.
    Rotate(f64),
}

/// An ordered list of augmentations (empty: none).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Augment {
    pub ops: Vec<AugmentOp>,
}

/// What `--augment` accepts, for messages.
pub const KNOWN: &str = "shift:PIXELS, crop:PAD, flip, rotate:DEGREES";

impl Augment {
    /// A comma-separated list such as `shift:2,flip`; the empty string is none.
    pub fn parse(spec: &str) -> Result<Augment, String> {
        let mut ops = vec![];
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, arg) = match item.split_once(':') {
                Some((n, a)) => (n, Some(a)),
                None => (item, None),
            };
            let pixels = |what: &str| -> Result<usize, String> {
                let a = arg.ok_or_else(|| format!("`{name}` needs {what}: `{name}:2`"))?;
                match a.parse::<usize>() {
                    Ok(p) if (1..=64).contains(&p) => Ok(p),
                    _ => Err(format!("`{item}`: {what} must be an integer from 1 to 64")),
                }
            };
            ops.push(match name {
                "shift" => AugmentOp::Shift(pixels("a number of pixels")?),
                "crop" => AugmentOp::Crop(pixels("a padding")?),
                "flip" if arg.is_none() => AugmentOp::Flip,
                "flip" => return Err(format!("`{item}`: flip takes no argument")),
                "rotate" => {
                    let a = arg.ok_or("`rotate` needs a number of degrees: `rotate:10`")?;
                    match a.parse::<f64>() {
                        Ok(d) if d > 0.0 && d <= 180.0 => AugmentOp::Rotate(d),
                        _ => return Err(format!("`{item}`: the degrees must be a number above 0, at most 180")),
                    }
                }
                _ => return Err(format!("unknown augmentation `{item}`; the known ones are {KNOWN}")),
            });
        }
        Ok(Augment { ops })
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Why these augmentations cannot apply to samples of `shape`, if they cannot.
    pub fn check_fits(&self, shape: &[usize]) -> Result<(), String> {
        if !self.is_empty() && shape.len() != 3 {
            return Err(format!(
                "--augment changes images, but the samples have shape {shape:?}; it needs [channels, height, width]"
            ));
        }
        Ok(())
    }

    /// Augment one sample of shape [C, H, W] in place, as drawn for (seed, epoch, index);
    /// `fill[c]` is the value of a blank pixel of channel c (0 before normalization).
    pub fn apply(&self, x: &mut [f32], shape: [usize; 3], fill: &[f32], (seed, epoch, index): (u64, u64, u32)) {
        let mut rng = SplitMix::stream(seed, AUGMENT, (epoch << 32) | u64::from(index));
        for op in &self.ops {
            match *op {
                AugmentOp::Shift(p) | AugmentOp::Crop(p) => {
                    let mut offset = || rng.below(2 * p as u64 + 1) as i64 - p as i64;
                    let (dy, dx) = (offset(), offset());
                    shift(x, shape, (dy, dx), fill);
                }
                AugmentOp::Flip => {
                    if rng.next_u64() & 1 == 1 {
                        flip(x, shape);
                    }
                }
                AugmentOp::Rotate(d) => {
                    let degrees = (rng.next_f64() * 2.0 - 1.0) * d;
                    rotate(x, shape, degrees.to_radians(), fill);
                }
            }
        }
    }
}

/// The canonical list, as `parse` reads it back: `shift:2,flip`.
impl fmt::Display for Augment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self
            .ops
            .iter()
            .map(|op| match op {
                AugmentOp::Shift(p) => format!("shift:{p}"),
                AugmentOp::Crop(p) => format!("crop:{p}"),
                AugmentOp::Flip => "flip".into(),
                AugmentOp::Rotate(d) => format!("rotate:{d}"),
            })
            .collect();
        f.write_str(&items.join(","))
    }
}

/// out[c, y, x] = in[c, y − dy, x − dx], `fill[c]` where that lies outside.
pub fn shift(x: &mut [f32], [c, h, w]: [usize; 3], (dy, dx): (i64, i64), fill: &[f32]) {
    let src = x.to_vec();
    for ch in 0..c {
        for y in 0..h {
            for xx in 0..w {
                let (sy, sx) = (y as i64 - dy, xx as i64 - dx);
                let inside = (0..h as i64).contains(&sy) && (0..w as i64).contains(&sx);
                x[(ch * h + y) * w + xx] =
                    if inside { src[(ch * h + sy as usize) * w + sx as usize] } else { fill[ch] };
            }
        }
    }
}

/// Mirror every row left–right.
pub fn flip(x: &mut [f32], [_, _, w]: [usize; 3]) {
    for row in x.chunks_mut(w) {
        row.reverse();
    }
}

/// Rotate counter-clockwise (as seen on screen, rows going down) by `angle` radians about
/// the centre ((W − 1)/2, (H − 1)/2): each output pixel samples the input bilinearly at
/// its inverse-rotated position, neighbours outside the image counting as `fill[c]`.
pub fn rotate(x: &mut [f32], [c, h, w]: [usize; 3], angle: f64, fill: &[f32]) {
    let src = x.to_vec();
    let (cy, cx) = ((h as f64 - 1.0) / 2.0, (w as f64 - 1.0) / 2.0);
    let (sin, cos) = angle.sin_cos();
    let at = |ch: usize, y: i64, xx: i64| -> f64 {
        if (0..h as i64).contains(&y) && (0..w as i64).contains(&xx) {
            f64::from(src[(ch * h + y as usize) * w + xx as usize])
        } else {
            f64::from(fill[ch])
        }
    };
    for y in 0..h {
        for xx in 0..w {
            let (py, px) = (y as f64 - cy, xx as f64 - cx);
            // The inverse rotation of (px, py), with y pointing down.
            let sx = cos * px - sin * py + cx;
            let sy = sin * px + cos * py + cy;
            let (y0, x0) = (sy.floor(), sx.floor());
            let (fy, fx) = (sy - y0, sx - x0);
            let (y0, x0) = (y0 as i64, x0 as i64);
            for ch in 0..c {
                let top = at(ch, y0, x0) * (1.0 - fx) + at(ch, y0, x0 + 1) * fx;
                let bottom = at(ch, y0 + 1, x0) * (1.0 - fx) + at(ch, y0 + 1, x0 + 1) * fx;
                x[(ch * h + y) * w + xx] = (top * (1.0 - fy) + bottom * fy) as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1×4×5 image with one bright pixel at (row, col).
    fn dot(row: usize, col: usize) -> Vec<f32> {
        let mut x = vec![0.0; 20];
        x[row * 5 + col] = 1.0;
        x
    }

    #[test]
    fn parse_reads_lists_and_names_the_known_ones_on_errors() {
        let a = Augment::parse("shift:2, flip,rotate:7.5,crop:4").unwrap();
        assert_eq!(a.ops, [AugmentOp::Shift(2), AugmentOp::Flip, AugmentOp::Rotate(7.5), AugmentOp::Crop(4)]);
        assert_eq!(a.to_string(), "shift:2,flip,rotate:7.5,crop:4");
        assert_eq!(Augment::parse(&a.to_string()).unwrap(), a);
        assert!(Augment::parse("").unwrap().is_empty());
        let e = Augment::parse("shift:2,mirror").unwrap_err();
        assert!(e.contains("unknown augmentation `mirror`") && e.contains(KNOWN), "{e}");
        assert!(Augment::parse("shift").unwrap_err().contains("needs a number of pixels"));
        assert!(Augment::parse("shift:0").unwrap_err().contains("from 1 to 64"));
        assert!(Augment::parse("rotate:-3").unwrap_err().contains("above 0"));
        assert!(Augment::parse("flip:1").unwrap_err().contains("no argument"));
        assert!(Augment::default().check_fits(&[4]).is_ok());
        assert!(a.check_fits(&[4]).unwrap_err().contains("[channels, height, width]"));
    }

    #[test]
    fn shift_moves_the_content_and_fills_the_border() {
        let mut x = dot(1, 1);
        shift(&mut x, [1, 4, 5], (2, -1), &[-0.5]);
        assert_eq!(x[3 * 5], 1.0);
        // The two rows that came from above the image and the column from past the right.
        assert!(x[..10].iter().all(|&v| v == -0.5) && x[14] == -0.5 && x[19] == -0.5);
        assert_eq!(x.iter().filter(|&&v| v == 0.0).count(), 20 - 1 - 12);
    }

    #[test]
    fn flip_mirrors_rows_and_rotations_turn_about_the_centre() {
        let mut x = dot(0, 1);
        flip(&mut x, [1, 4, 5]);
        assert_eq!(x, dot(0, 3));
        // No angle: the identity, bit for bit.
        let mut y = dot(2, 3);
        rotate(&mut y, [1, 4, 5], 0.0, &[0.0]);
        assert_eq!(y, dot(2, 3));
        // A quarter turn of a 5×5 image moves the top-middle pixel to the middle of the
        // left edge (counter-clockwise on screen).
        let mut z = vec![0.0; 25];
        z[2] = 1.0;
        rotate(&mut z, [1, 5, 5], std::f64::consts::FRAC_PI_2, &[0.0]);
        assert!((z[2 * 5] - 1.0).abs() < 1e-6, "{z:?}");
        assert!((z.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn draws_depend_only_on_seed_epoch_and_sample() {
        let aug = Augment::parse("shift:2,flip,rotate:15").unwrap();
        let base: Vec<f32> = (0..2 * 6 * 6).map(|i| (i % 7) as f32).collect();
        let run = |key| {
            let mut x = base.clone();
            aug.apply(&mut x, [2, 6, 6], &[0.0, 0.0], key);
            x
        };
        assert_eq!(run((1, 0, 5)), run((1, 0, 5)));
        let others = [run((1, 1, 5)), run((1, 0, 6)), run((2, 0, 5))];
        assert!(others.iter().all(|o| *o != run((1, 0, 5))));
        // Both channels of a sample move together.
        let x = run((3, 2, 1));
        let mut one = base[..36].to_vec();
        aug.apply(&mut one, [1, 6, 6], &[0.0], (3, 2, 1));
        assert_eq!(x[..36], one[..]);
    }
}
