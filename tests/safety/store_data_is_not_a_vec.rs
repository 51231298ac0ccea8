// A store's buffer cannot be shrunk or replaced: compiled code addresses it at fixed offsets.
use percept::compiler::exec::{StateLayout, StateStore};

fn main() {
    let spec = percept::compiler::parse_and_check(&percept::compiler::SourceFile::new("m.nn", "model m { input [2] dense(2) }")).unwrap();
    let mut store = StateStore::new(StateLayout::new(&spec, &[]));
    store.data.clear();
}
