//! Loss and accuracy per epoch, drawn with plotters to a PNG (`percept train --plot`).

use super::register_fonts;
use crate::error::{Error, Result};
use crate::train::EpochReport;
use plotters::prelude::*;
use std::path::Path;

/// Draw the loss (left) and accuracy (right) curves of a run, 960×400.
pub fn draw_curves(history: &[EpochReport], path: &Path) -> Result<()> {
    register_fonts();
    let fail = |e: &dyn std::fmt::Display| Error(format!("cannot draw the plot {}: {e}", path.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
    }
    // Draw into memory, then encode with the `image` crate (plotters' own encoder would
    // pull in a second version of it).
    let (w, h) = (960u32, 400u32);
    let mut pixels = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let (left, right) = root.split_horizontally(480);
        let epochs = history.len().max(1) as f64;
        let x = |r: &EpochReport| r.epoch as f64;

        let series = |f: &dyn Fn(&EpochReport) -> Option<f64>| -> Vec<(f64, f64)> {
            history.iter().filter_map(|r| f(r).filter(|v| v.is_finite()).map(|v| (x(r), v))).collect()
        };
        let losses = [
            ("train", series(&|r| Some(r.train_loss)), BLUE),
            ("val", series(&|r| r.val.as_ref().and_then(|e| e.loss)), GREEN),
            ("test", series(&|r| r.test.as_ref().and_then(|e| e.loss)), RED),
        ];
        let accs = [
            ("train", series(&|r| r.train_accuracy.map(|a| a * 100.0)), BLUE),
            ("val", series(&|r| r.val.as_ref().and_then(|e| e.accuracy).map(|a| a * 100.0)), GREEN),
            ("test", series(&|r| r.test.as_ref().and_then(|e| e.accuracy).map(|a| a * 100.0)), RED),
        ];
        for (area, title, lines) in [(&left, "loss", &losses), (&right, "accuracy (%)", &accs)] {
            let ys: Vec<f64> = lines.iter().flat_map(|(_, s, _)| s.iter().map(|p| p.1)).collect();
            let (lo, hi) = ys.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| (a.min(y), b.max(y)));
            let (lo, hi) = if lo.is_finite() { (lo, if hi > lo { hi } else { lo + 1.0 }) } else { (0.0, 1.0) };
            let pad = (hi - lo) * 0.05;
            let mut chart = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 20))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(50)
                .build_cartesian_2d(0.5..epochs + 0.5, (lo - pad)..(hi + pad))
                .map_err(|e| fail(&e))?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .x_labels(history.len().clamp(2, 10))
                .x_label_formatter(&|x| format!("{}", x.round() as i64))
                .draw()
                .map_err(|e| fail(&e))?;
            for (name, points, color) in lines.iter().filter(|(_, s, _)| !s.is_empty()) {
                let color = *color;
                chart
                    .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                    .map_err(|e| fail(&e))?
                    .label(*name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
                chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled()))).map_err(|e| fail(&e))?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| fail(&e))?;
        }
        root.present().map_err(|e| fail(&e))?;
    }
    let img = image::RgbImage::from_raw(w, h, pixels).ok_or_else(|| fail(&"buffer size"))?;
    img.save(path).map_err(|e| fail(&e))
}
