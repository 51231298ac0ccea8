//! Dead values out of a loop nest: a `let` whose value nothing reads goes (every
//! expression is pure; stores, variable writes and calls are the effects). Lowerings may
//! compute what one use needs and another does not — a pooling winner's offset where only
//! its value is stored — without the printed nest or the CLIF carrying it.

use super::{Idx, Stmt};

fn mark_idx(live: &mut [bool], i: &Idx) {
    for &(v, _) in i.terms() {
        live[v.0 as usize] = true;
    }
}

/// One backward walk: SSA values are used only after their definition, in the same
/// block or a nested one, so a value unread by the time its `let` is reached is dead.
fn block(live: &mut Vec<bool>, body: &mut Vec<Stmt>) {
    let mut keep = vec![true; body.len()];
    for (k, s) in body.iter_mut().enumerate().rev() {
        match s {
            Stmt::Let(v, e) => {
                if live[v.0 as usize] {
                    for v in e.operands() {
                        live[v.0 as usize] = true;
                    }
                } else {
                    keep[k] = false;
                }
            }
            Stmt::Store { at, value, .. } => {
                live[value.0 as usize] = true;
                mark_idx(live, at);
            }
            Stmt::Set(_, v) => live[v.0 as usize] = true,
            Stmt::For { body, .. } | Stmt::Items { body, .. } => block(live, body),
            Stmt::IfBelow { value, then, otherwise, .. } => {
                block(live, then);
                block(live, otherwise);
                live[value.0 as usize] = true;
            }
            Stmt::CallMicro(call) => {
                for p in [&call.a, &call.b, &call.tile] {
                    mark_idx(live, &p.at);
                }
            }
        }
    }
    let mut k = 0;
    body.retain(|_| {
        k += 1;
        keep[k - 1]
    });
}

/// Remove the dead `let`s of a nest's body.
pub fn dce(values: usize, body: &mut Vec<Stmt>) {
    let mut live = vec![false; values];
    block(&mut live, body);
}
