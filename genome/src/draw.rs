//! A genome drawn as an SVG picture, with no Graphviz installed: the DAG laid out in
//! layers from the input down to the classifier head by `layout-rs` (a Sugiyama-style
//! layered layout in Rust). Each vertex is a box with its id, kind and shape (BN_RELU
//! filled); each edge is labelled with its id and what it does (a convolution's filter,
//! stride and channels); skip connections are dashed.

use crate::analysis::Analysis;
use crate::graph::{EdgeOp, Genome, VertexKind};
use layout::backends::svg::SVGWriter;
use layout::core::base::Orientation;
use layout::core::color::Color;
use layout::core::style::{LineStyleKind, StyleAttr};
use layout::std_shapes::render::get_shape_size;
use layout::std_shapes::shapes::{Arrow, Element, LineEndKind, ShapeKind};
use layout::topo::layout::VisualGraph;
use std::collections::HashMap;

const FONT: usize = 14;

/// An edge's label: `e{id}` and what it does.
pub fn edge_caption(id: crate::graph::Id, op: &EdgeOp) -> String {
    match op {
        EdgeOp::Identity => format!("e{id} identity"),
        EdgeOp::Conv(c) => format!(
            "e{id} conv {}x{} s{} ->{}",
            c.filter_h, c.filter_w, c.stride, c.channels
        ),
    }
}

impl Genome {
    /// The genome as a standalone SVG document (no XML declaration, so that it can be
    /// put inline in a page too). With `analysis`, vertices show their shapes.
    pub fn to_svg(&self, analysis: Option<&Analysis>) -> String {
        let dir = Orientation::TopToBottom;
        let mut vg = VisualGraph::new(dir);
        let box_of = |label: String, fill: &str| {
            let shape = ShapeKind::new_box(&label);
            let look = StyleAttr::new(Color::fast("black"), 1, Some(Color::fast(fill)), 4, FONT);
            let size = get_shape_size(dir.flip(), &shape, FONT, false);
            Element::create(shape, look, dir, size)
        };
        let mut handles = HashMap::new();
        for v in &self.vertices {
            let mut label = if v.id == self.input_vertex {
                format!("v{} input", v.id)
            } else {
                format!("v{} {}", v.id, v.kind.name())
            };
            if let Some(shape) = analysis.and_then(|a| a.vertex_shapes.get(&v.id)) {
                label.push_str(&format!("\n{shape}"));
            }
            let fill = match v.kind {
                VertexKind::BnRelu => "lightblue",
                VertexKind::Linear => "white",
            };
            handles.insert(v.id, vg.add_node(box_of(label, fill)));
        }
        let head = vg.add_node(box_of(
            format!("head: {} classes", self.classes),
            "lightyellow",
        ));
        for e in &self.edges {
            let (Some(&from), Some(&to)) = (handles.get(&e.from), handles.get(&e.to)) else {
                continue;
            };
            let style = if e.primary {
                LineStyleKind::Normal
            } else {
                LineStyleKind::Dashed
            };
            let colour = match e.op {
                EdgeOp::Conv(_) => "darkblue",
                EdgeOp::Identity => "black",
            };
            let look = StyleAttr::new(Color::fast(colour), 1, None, 0, FONT - 2);
            let arrow = Arrow::new(
                LineEndKind::None,
                LineEndKind::Arrow,
                style,
                &edge_caption(e.id, &e.op),
                &look,
                &None,
                &None,
            );
            vg.add_edge(arrow, from, to);
        }
        if let Some(&out) = handles.get(&self.output_vertex) {
            vg.add_edge(Arrow::simple(""), out, head);
        }
        let mut svg = SVGWriter::new();
        vg.do_it(false, false, false, &mut svg);
        let text = svg.finalize();
        // Drop the XML declaration (if any) so the document can sit inside HTML.
        match text.find("<svg") {
            Some(start) => text[start..].to_string(),
            None => text,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::graph::InputShape;
    use crate::limits::Limits;
    use crate::reference::ReferenceNet;

    #[test]
    fn every_vertex_and_edge_is_drawn_with_its_label() {
        let g = ReferenceNet::Small.genome(InputShape::CIFAR, 10);
        let a = g.analyze(&Limits::default()).unwrap();
        let svg = g.to_svg(Some(&a));
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.trim_end().ends_with("</svg>"));
        for v in &g.vertices {
            assert!(svg.contains(&format!("v{} ", v.id)), "v{}", v.id);
        }
        for e in &g.edges {
            assert!(svg.contains(&format!("e{} conv 3x3", e.id)), "e{}", e.id);
        }
        assert!(svg.contains("head: 10 classes"));
        assert!(svg.contains("32x32x16"), "shapes are shown");
    }
}
