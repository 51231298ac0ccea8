// A store's layout cannot be swapped for another after the programs were compiled for it.
use percept::compiler::exec::{StateLayout, StateStore};

fn main() {
    let spec = percept::compiler::parse_and_check(&percept::compiler::SourceFile::new("m.nn", "model m { input [2] dense(2) }")).unwrap();
    let mut store = StateStore::new(StateLayout::new(&spec, &[]));
    let other = StateLayout::new(&spec, &["momentum_buffer"]);
    store.layout = other;
}
