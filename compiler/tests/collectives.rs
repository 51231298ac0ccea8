//! Collective points: a grad program ends at the point where every gradient is in the
//! state; whatever runs there (an allreduce with MPI) sees the gradients and can change
//! them before anything reads them, on both back ends. With one process nothing runs.

mod common;

use common::spec;
use percept_compiler::codegen::{compile, CodegenOptions};
use percept_compiler::exec::{
    self, CollectivePoint, Collectives, Executable, Feed, InterpExecutable, SlotKind, StateLayout, StateStore,
};
use percept_compiler::ops::StepCtx;
use percept_compiler::Error;

/// Doubles every gradient, as a sum over two identical processes would.
struct Double {
    calls: Vec<CollectivePoint>,
}

impl Collectives for Double {
    fn at(&mut self, point: &CollectivePoint, store: &mut StateStore) -> Result<(), Error> {
        self.calls.push(point.clone());
        let grads = store.layout().grads();
        assert!(store.data()[grads.clone()].iter().any(|&g| g != 0.0), "the gradients are ready");
        for g in &mut store.data_mut()[grads] {
            *g *= 2.0;
        }
        Ok(())
    }
}

#[test]
fn the_grad_program_stops_where_every_gradient_is_ready() {
    let spec = spec(
        "model m { input [1, 5, 5] conv2d(2, kernel: 3) batchnorm relu flatten dense(3) loss softmax_cross_entropy }",
    );
    let layout = StateLayout::new(&spec, &[]);
    let g = exec::grad_program(&spec, 3, &[]).unwrap();
    assert_eq!(
        exec::collective_points(&g),
        vec![(g.nodes.len() - 1, CollectivePoint::GradientsReady { global: vec![] })]
    );
    let mut store = StateStore::new(layout.clone());
    for (i, v) in store.data_mut().iter_mut().enumerate() {
        *v = ((i * 7 % 11) as f32 - 5.0) * 0.05;
    }
    for s in layout.of_kind(SlotKind::Running).filter(|s| s.name.ends_with("running_var")) {
        store.data_mut()[s.range()].fill(1.0);
    }
    let x: Vec<f32> = (0..75).map(|i| (i % 9) as f32 * 0.1).collect();
    let t = vec![0.0, 2.0, 1.0];
    let feed = Feed { data: &x, target: Some(&t) };
    let cx = StepCtx::default();
    let mut jit = compile(&g, &layout, CodegenOptions::default()).unwrap();
    assert!(jit.program().plan_text(false).contains("collective point `gradients ready`"));
    let mut interp = InterpExecutable::new(g.clone());
    let programs: [&mut dyn Executable; 2] = [&mut jit, &mut interp];
    for exe in programs {
        let mut once = store.clone();
        exe.run(&mut once, &feed, &cx).unwrap();
        let mut doubled = store.clone();
        let mut c = Double { calls: vec![] };
        exe.run_with(&mut doubled, &feed, &cx, &mut c).unwrap();
        assert_eq!(c.calls, vec![CollectivePoint::GradientsReady { global: vec![] }], "{}", exe.backend());
        let r = layout.grads();
        for (a, b) in once.data()[r.clone()].iter().zip(&doubled.data()[r]) {
            assert_eq!(2.0 * a, *b, "{}", exe.backend());
        }
        // Nothing but the gradients changed at the point.
        let params = layout.of_kind(SlotKind::Param).chain(layout.of_kind(SlotKind::Running));
        for s in params {
            assert_eq!(once.data()[s.range()], doubled.data()[s.range()], "{} {}", exe.backend(), s.name);
        }
    }
    // Evaluation and update programs have no collective point.
    assert!(exec::collective_points(&exec::eval_program(&spec, 3, true, &[]).unwrap()).is_empty());
}
