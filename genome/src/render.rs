//! Renderings for people: a text summary and Graphviz DOT.

use crate::analysis::Analysis;
use crate::graph::{EdgeOp, Genome, VertexKind};
use std::fmt::Write;

fn edge_label(op: &EdgeOp) -> String {
    match op {
        EdgeOp::Identity => "identity".to_string(),
        EdgeOp::Conv(c) => format!(
            "conv {}x{} s{} -> {}",
            c.filter_h, c.filter_w, c.stride, c.channels
        ),
    }
}

impl Genome {
    /// A readable summary: vertices with shapes, edges, parameters and FLOPs.
    pub fn summary(&self, analysis: &Analysis) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "genome: {} vertices, {} edges ({} convolutions), learning rate {}",
            self.vertices.len(),
            self.edges.len(),
            self.conv_count(),
            self.learning_rate
        );
        let _ = writeln!(
            s,
            "input {}x{}x{}, {} classes, {} parameters, {} forward FLOPs per image",
            self.input.height,
            self.input.width,
            self.input.channels,
            self.classes,
            analysis.cost.params,
            analysis.cost.forward_flops
        );
        if let Some(g) = self.augment {
            let _ = writeln!(
                s,
                "augmentation gene: crop {}, flip {}",
                if g.crop { "on" } else { "off" },
                if g.flip { "on" } else { "off" }
            );
        }
        let _ = writeln!(s, "vertices (topological order):");
        for id in &analysis.order {
            let v = self.vertex(*id).expect("analysed vertex");
            let role = if *id == self.input_vertex {
                " (input)"
            } else if *id == self.output_vertex {
                " (output)"
            } else {
                ""
            };
            let _ = writeln!(
                s,
                "  v{id:<5} {:<8} {}{role}",
                v.kind.name(),
                analysis.vertex_shapes[id]
            );
        }
        let _ = writeln!(s, "edges:");
        for e in &self.edges {
            let _ = writeln!(
                s,
                "  e{:<5} v{} -> v{} {:<7} {} => {}",
                e.id,
                e.from,
                e.to,
                if e.primary { "primary" } else { "skip" },
                edge_label(&e.op),
                analysis.edge_shapes[&e.id]
            );
        }
        let out = analysis.output_shape(self);
        let _ = writeln!(
            s,
            "head: {} features -> {} classes",
            out.numel(),
            self.classes
        );
        s
    }

    /// Graphviz DOT. Shapes are shown where `analysis` is given.
    pub fn to_dot(&self, analysis: Option<&Analysis>) -> String {
        let mut s = String::from("digraph genome {\n  rankdir=TB;\n  node [shape=box];\n");
        for v in &self.vertices {
            let mut label = format!("v{} {}", v.id, v.kind.name());
            if v.id == self.input_vertex {
                label = format!("v{} input", v.id);
            }
            if let Some(shape) = analysis.and_then(|a| a.vertex_shapes.get(&v.id)) {
                let _ = write!(label, "\\n{shape}");
            }
            let style = match v.kind {
                VertexKind::BnRelu => ", style=filled, fillcolor=lightblue",
                VertexKind::Linear => "",
            };
            let _ = writeln!(s, "  v{} [label=\"{label}\"{style}];", v.id);
        }
        let _ = writeln!(
            s,
            "  head [label=\"head: {} classes\", shape=ellipse];\n  v{} -> head;",
            self.classes, self.output_vertex
        );
        for e in &self.edges {
            let style = if e.primary { "solid" } else { "dashed" };
            let _ = writeln!(
                s,
                "  v{} -> v{} [label=\"e{} {}\", style={style}];",
                e.from,
                e.to,
                e.id,
                edge_label(&e.op)
            );
        }
        s.push_str("}\n");
        s
    }
}
