//! The stable text form of the graph IR.
//!
//! ```text
//! graph lenet5 train batch=64 {
//!   %0 = data : [64, 1, 28, 28]
//!   %2 = param "0.weight" : [6, 1, 5, 5]
//!   // forward
//!   %4 = conv2d(%0, %2) stride=[1, 1] padding=[2, 2] : [64, 6, 28, 28]  # conv2d_0
//!   ...
//!   output loss = %30
//! }
//! ```

use super::{Graph, Phase};
use crate::text::fmt_shape;
use std::fmt::{self, Write};

impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "graph {} {} batch={} {{", self.name, self.mode, self.batch)?;
        let mut phase = None;
        for n in &self.nodes {
            let is_source = matches!(n.op, crate::ops::Op::Source(_));
            if !is_source && phase != Some(n.origin.phase) {
                phase = Some(n.origin.phase);
                let title = match n.origin.phase {
                    Phase::Forward => "forward",
                    Phase::Loss => "loss",
                    Phase::Backward => "backward",
                    Phase::Update => "update",
                };
                writeln!(f, "  // {title}")?;
            }
            writeln!(f, "  {}", self.node_text(n))?;
        }
        for (role, v) in &self.outputs {
            writeln!(f, "  output {role} = {v}")?;
        }
        f.write_str("}\n")
    }
}

impl Graph {
    /// One node's line of the text form, without indentation:
    /// `%4 = conv2d(%0, %2) stride=[1, 1] padding=[2, 2] : [64, 6, 28, 28]  # conv2d_0`.
    pub fn node_text(&self, n: &super::Node) -> String {
        let mut line = String::new();
        let outs: Vec<String> = n.outputs.iter().map(|v| v.to_string()).collect();
        let _ = write!(line, "{} = {}", outs.join(", "), n.op.name());
        if !n.inputs.is_empty() {
            let ins: Vec<String> = n.inputs.iter().map(|v| v.to_string()).collect();
            let _ = write!(line, "({})", ins.join(", "));
        }
        let attrs = n.op.attrs();
        if !attrs.is_empty() {
            let _ = write!(line, " {attrs}");
        }
        let shapes: Vec<String> = n.outputs.iter().map(|&v| fmt_shape(self.shape(v))).collect();
        let _ = write!(line, " : {}", shapes.join(", "));
        if !n.origin.tag.is_empty() {
            let _ = write!(line, "  # {}", n.origin.tag);
        }
        line
    }
}
