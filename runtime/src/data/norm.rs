//! Input normalization x′ = (x − mean) / std, applied after scaling pixels to [0, 1]: one
//! (mean, std) for every value (grey images, flat inputs), or one per channel of a colour
//! image (torchvision's `Normalize(mean, std)`). Recorded in the weights' metadata so
//! `eval`, `predict`, `features` and the C library preprocess the same way.

use super::Dataset;

#[derive(Clone, Debug, PartialEq)]
pub struct Norm {
    /// One value, or one per channel.
    pub mean: Vec<f32>,
    /// As many as `mean`, each positive.
    pub std: Vec<f32>,
}

impl Norm {
    /// The same (mean, std) for every value.
    pub fn uniform(mean: f32, std: f32) -> Norm {
        Norm { mean: vec![mean], std: vec![std] }
    }

    pub fn identity() -> Norm {
        Norm::uniform(0.0, 1.0)
    }

    pub fn is_identity(&self) -> bool {
        self.mean.iter().all(|&m| m == 0.0) && self.std.iter().all(|&s| s == 1.0)
    }

    /// The data set's statistics: per channel for samples [C, H, W] with C > 1, else of
    /// every value. (Population standard deviation, as torchvision recipes compute it;
    /// a constant channel gets 1.)
    pub fn of(ds: &Dataset) -> Norm {
        let channels = match ds.sample_shape[..] {
            [c, _, _] if c > 1 => c,
            _ => 1,
        };
        let plane = ds.sample_len() / channels;
        let (mut mean, mut std) = (vec![], vec![]);
        for c in 0..channels {
            let values = || ds.x.chunks(plane).skip(c).step_by(channels).flatten().map(|&v| f64::from(v));
            let n = (ds.len() * plane).max(1) as f64;
            let m = values().sum::<f64>() / n;
            let var = values().map(|v| (v - m).powi(2)).sum::<f64>() / n;
            mean.push(m as f32);
            std.push(if var > 0.0 { var.sqrt() as f32 } else { 1.0 });
        }
        Norm { mean, std }
    }

    /// Whether it applies to samples of `shape`: one value, or one per channel.
    pub fn fits(&self, shape: &[usize]) -> bool {
        self.mean.len() == 1 || (shape.len() == 3 && shape[0] == self.mean.len())
    }

    /// Normalize samples (each `sample_len` values, channels first) in place.
    pub fn apply(&self, x: &mut [f32], sample_len: usize) {
        if self.is_identity() {
            return;
        }
        let plane = sample_len / self.mean.len();
        for sample in x.chunks_mut(sample_len) {
            for (c, values) in sample.chunks_mut(plane).enumerate() {
                let (m, s) = (self.mean[c], self.std[c]);
                values.iter_mut().for_each(|v| *v = (*v - m) / s);
            }
        }
    }

    /// What a blank (0) pixel of each of `channels` channels becomes.
    pub fn zero(&self, channels: usize) -> Vec<f32> {
        (0..channels).map(|c| self.pick(c)).collect()
    }

    fn pick(&self, c: usize) -> f32 {
        let i = if self.mean.len() == 1 { 0 } else { c };
        (0.0 - self.mean[i]) / self.std[i]
    }

    /// `0.1307` or `0.4914,0.4822,0.4465`: the metadata's form of a list.
    pub fn list_text(values: &[f32]) -> String {
        values.iter().map(f32::to_string).collect::<Vec<_>>().join(",")
    }

    /// From the metadata's or the command line's text: `MEAN,STD` (one pair) or
    /// `M1,M2,M3/S1,S2,S3` (per channel). `None` if it is not one of those.
    pub fn parse(text: &str) -> Option<Norm> {
        let list = |t: &str| -> Option<Vec<f32>> {
            t.split(',').map(|p| p.trim().parse::<f32>().ok().filter(|v| v.is_finite())).collect()
        };
        let norm = match text.split_once('/') {
            Some((m, s)) => Norm { mean: list(m)?, std: list(s)? },
            None => match list(text)?[..] {
                [mean, std] => Norm::uniform(mean, std),
                _ => return None,
            },
        };
        norm.valid().then_some(norm)
    }

    /// As many means as deviations, at least one, every deviation positive.
    pub fn valid(&self) -> bool {
        !self.mean.is_empty() && self.mean.len() == self.std.len() && self.std.iter().all(|&s| s > 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Targets;

    #[test]
    fn per_channel_statistics_and_their_application() {
        // Two RGB samples of 2 pixels: channel c holds c + {0, 1, 2, 3}·(c + 1).
        let mut x = vec![];
        for s in 0..2 {
            for c in 0..3 {
                x.extend((0..2).map(|p| c as f32 + ((s * 2 + p) * (c + 1)) as f32));
            }
        }
        let ds = Dataset {
            name: "t".into(),
            sample_shape: vec![3, 1, 2],
            x: x.clone(),
            targets: Targets::Classes { labels: vec![0, 0], names: vec!["a".into()] },
        };
        let n = Norm::of(&ds);
        assert_eq!(n.mean, [1.5, 4.0, 6.5]);
        let sd = 1.25f64.sqrt();
        assert_eq!(n.std, [sd as f32, (2.0 * sd) as f32, (3.0 * sd) as f32]);
        let mut y = x.clone();
        n.apply(&mut y, 6);
        assert!((y[2] - (x[2] - 4.0) / n.std[1]).abs() < 1e-7 && (y[11] - (x[11] - 6.5) / n.std[2]).abs() < 1e-7);
        assert!(n.fits(&[3, 1, 2]) && !n.fits(&[1, 1, 2]) && Norm::uniform(0.5, 2.0).fits(&[4]));
        assert_eq!(n.zero(3)[0], -1.5 / n.std[0]);
        // A grey set: one pair.
        let grey = Dataset { sample_shape: vec![1, 2, 3], ..ds };
        assert_eq!(Norm::of(&grey).mean.len(), 1);
    }

    #[test]
    fn parse_takes_a_pair_or_per_channel_lists() {
        assert_eq!(Norm::parse("0.5,0.25"), Some(Norm::uniform(0.5, 0.25)));
        let n = Norm::parse("0.4914,0.4822,0.4465/0.247,0.243,0.261").unwrap();
        assert_eq!((n.mean.len(), n.std[2]), (3, 0.261));
        assert_eq!(Norm::parse(&format!("{}/{}", Norm::list_text(&n.mean), Norm::list_text(&n.std))), Some(n));
        for bad in ["0.5", "0.5,0", "1,2,3", "1,2/3", "a,b", "0.5,-1", "1,2/3,inf"] {
            assert_eq!(Norm::parse(bad), None, "{bad}");
        }
    }
}
