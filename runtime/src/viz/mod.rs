//! Pictures: training curves, feature maps, filters, and an overview of what each layer
//! sees. Images are composed in memory with the `image` crate; text is drawn with
//! plotters from a bundled font (DejaVu Sans, cut to ASCII), so no system font is needed.

mod features;
mod plot;

pub use features::{feature_grid, filters_grid, render_features, tile, FeatureImages, LayerMaps};
pub use plot::draw_curves;

use plotters::style::{register_font, FontStyle};
use std::sync::Once;

/// DejaVu Sans cut to printable ASCII (10 KB; license in runtime/assets/fonts).
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-subset.ttf");

pub(crate) fn register_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = register_font("sans-serif", FontStyle::Normal, FONT);
    });
}
