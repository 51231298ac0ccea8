//! docs/LANGUAGE.md documents exactly the layer table: every layer, every argument and its
//! default appear in its layer row.

use percept_compiler::layers::{ArgDefault, Loss, LAYERS};

#[test]
fn every_layer_argument_and_default_is_documented() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/LANGUAGE.md")).unwrap();
    for def in LAYERS {
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", def.name)))
            .unwrap_or_else(|| panic!("layer `{}` has no row in docs/LANGUAGE.md", def.name));
        for arg in def.args {
            let cell = match arg.default {
                ArgDefault::Required => format!("`{}`", arg.name),
                ArgDefault::SameAs(other) => format!("`{}: = {other}`", arg.name),
                d => format!("`{}: {d}`", arg.name),
            };
            assert!(row.contains(&cell), "the row of `{}` does not mention {cell}:\n{row}", def.name);
        }
    }
    for loss in Loss::ALL {
        assert!(doc.contains(&format!("| `{}` |", loss.name())), "loss {} undocumented", loss.name());
    }
}
