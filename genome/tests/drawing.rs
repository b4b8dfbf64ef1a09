//! The architecture picture (`Genome::to_svg`) of genomes from long mutation walks is a
//! well-formed SVG document that shows every vertex and every edge with its label.

// A failed unwrap is the test failing.
#![allow(clippy::unwrap_used)]

use genome::walk::walk;
use genome::{Genome, Limits};

/// Every text of the document, joined.
fn texts(doc: &roxmltree::Document<'_>) -> String {
    doc.descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect::<Vec<_>>()
        .join("\n")
}

fn check(g: &Genome) {
    let limits = Limits::default();
    let analysis = g.analyze(&limits).unwrap();
    let svg = g.to_svg(Some(&analysis));
    let doc = roxmltree::Document::parse(&svg)
        .unwrap_or_else(|e| panic!("not well-formed XML: {e}\n{svg}"));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let text = texts(&doc);
    for v in &g.vertices {
        let label = if v.id == g.input_vertex {
            format!("v{} input", v.id)
        } else {
            format!("v{} {}", v.id, v.kind.name())
        };
        assert!(text.contains(&label), "vertex {label} missing");
        let shape = analysis.vertex_shapes[&v.id].to_string();
        assert!(text.contains(&shape), "shape {shape} of v{} missing", v.id);
    }
    for e in &g.edges {
        let caption = genome::draw::edge_caption(e.id, &e.op);
        assert!(text.contains(&caption), "edge {caption} missing");
    }
    assert!(text.contains(&format!("head: {} classes", g.classes)));
    // Every edge is drawn as a path, the head's edge too.
    let paths = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "path")
        .count();
    assert!(
        paths > g.edges.len(),
        "{paths} paths for {} edges",
        g.edges.len()
    );
}

#[test]
fn long_walks_draw_every_vertex_and_edge() {
    for seed in 0..3 {
        let mut genomes = Vec::new();
        let report = walk(seed, 300, 1, &Limits::default(), |step| {
            if step.step % 60 == 0 {
                genomes.push(step.genome.clone());
            }
        })
        .unwrap();
        let last = report.last.unwrap();
        assert!(
            last.vertices.len() > 5,
            "a walk that grew: {}",
            last.vertices.len()
        );
        for g in genomes.iter().chain([&last]) {
            check(g);
        }
    }
}

#[test]
fn the_initial_individual_is_drawn() {
    check(&Genome::initial(genome::InputShape::CIFAR, 10));
}
