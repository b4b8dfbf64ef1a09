//! Charts drawn with plotters, as SVG and as PNG, for `evo report` and `evo bench
//! search`. Text is drawn with the DejaVu Sans font embedded in the binary
//! (`assets/DejaVuSans.ttf`), so no system font is needed; PNGs are encoded with the
//! `image` crate.

use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use thiserror::Error;

/// The font every chart's text is drawn with.
const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// A chart that could not be drawn or written.
#[derive(Debug, Error)]
#[error("drawing {path}: {reason}")]
pub struct PlotError {
    /// The file being written.
    pub path: String,
    /// What went wrong.
    pub reason: String,
}

/// Makes the embedded font the one plotters draws "sans-serif" with (once).
pub fn register_fonts() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            plotters::style::register_font("sans-serif", style, FONT)
                .map_err(|_| "the embedded font is not a font".to_string())?;
        }
        Ok(())
    })
    .clone()
}

/// One named series of points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its name in the legend.
    pub name: String,
    /// Its points (x, y).
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed (a reference) rather than solid.
    pub dashed: bool,
}

/// How a chart shows its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marks {
    /// Lines through the points.
    Lines,
    /// A dot at each point.
    Dots,
}

/// A chart of series over x and y.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// The caption.
    pub title: String,
    /// The x axis' description.
    pub x_desc: String,
    /// The y axis' description.
    pub y_desc: String,
    /// A logarithmic x axis (for FLOPs).
    pub log_x: bool,
    /// Where the x axis ends at the least (`None`: where the points end).
    pub x_max: Option<f64>,
    /// Lines or dots.
    pub marks: Marks,
    /// What to draw.
    pub series: Vec<Series>,
}

/// The chart's size in pixels.
pub const SIZE: (u32, u32) = (900, 560);

impl Chart {
    /// The x range: the points' span (at least some width), from 0 on a linear axis.
    fn x_range(&self) -> (f64, f64) {
        let xs = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0));
        let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
        let hi = hi.max(self.x_max.unwrap_or(f64::NEG_INFINITY));
        if self.log_x {
            let lo = if lo.is_finite() && lo > 0.0 { lo } else { 1.0 };
            let hi = if hi.is_finite() && hi > lo {
                hi
            } else {
                lo * 10.0
            };
            (lo, hi * 1.05)
        } else {
            let hi = if hi.is_finite() && hi > 0.0 { hi } else { 1.0 };
            (0.0, hi * 1.02)
        }
    }

    /// The y range: from 0 (or a little under the lowest point) to a little over the top.
    fn y_range(&self) -> (f64, f64) {
        let ys = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1));
        let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
            (a.min(y), b.max(y))
        });
        let lo = if lo.is_finite() {
            (lo - 2.0).min(0.0)
        } else {
            0.0
        };
        let hi = if hi.is_finite() { hi + 3.0 } else { 10.0 };
        (lo, hi.max(lo + 1.0))
    }

    /// Draws the chart on `root`.
    pub fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        register_fonts()?;
        let e = |e: &dyn std::fmt::Display| e.to_string();
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let (x0, x1) = self.x_range();
        let (y0, y1) = self.y_range();
        let mut builder = ChartBuilder::on(root);
        builder
            .caption(&self.title, ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(56);
        if self.log_x {
            let mut chart = builder
                .build_cartesian_2d((x0..x1).log_scale(), y0..y1)
                .map_err(|x| e(&x))?;
            chart
                .configure_mesh()
                .x_desc(&self.x_desc)
                .y_desc(&self.y_desc)
                .x_label_formatter(&|v| format!("{v:.0e}"))
                .draw()
                .map_err(|x| e(&x))?;
            self.draw_series(&mut chart)?;
            legend(&mut chart)?;
        } else {
            let mut chart = builder
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(|x| e(&x))?;
            chart
                .configure_mesh()
                .x_desc(&self.x_desc)
                .y_desc(&self.y_desc)
                .draw()
                .map_err(|x| e(&x))?;
            self.draw_series(&mut chart)?;
            legend(&mut chart)?;
        }
        root.present().map_err(|x| e(&x))
    }

    fn draw_series<'a, DB, X>(
        &self,
        chart: &mut ChartContext<'a, DB, Cartesian2d<X, plotters::coord::types::RangedCoordf64>>,
    ) -> Result<(), String>
    where
        DB: DrawingBackend + 'a,
        X: Ranged<ValueType = f64>,
    {
        for (i, s) in self.series.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            let style = ShapeStyle::from(colour).stroke_width(2);
            let drawn = match (self.marks, s.dashed) {
                (Marks::Dots, _) => {
                    chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 2, colour.filled())))
                }
                (Marks::Lines, true) => {
                    chart.draw_series(DashedLineSeries::new(s.points.clone(), 6, 4, style))
                }
                (Marks::Lines, false) => {
                    chart.draw_series(LineSeries::new(s.points.clone(), style))
                }
            };
            drawn
                .map_err(|x| x.to_string())?
                .label(s.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
        }
        Ok(())
    }

    /// Writes the chart as SVG to `path`.
    pub fn save_svg(&self, path: &Path) -> Result<(), PlotError> {
        let root = SVGBackend::new(path, SIZE).into_drawing_area();
        self.draw(&root).map_err(|reason| PlotError {
            path: path.display().to_string(),
            reason,
        })
    }

    /// Writes the chart as PNG to `path`.
    pub fn save_png(&self, path: &Path) -> Result<(), PlotError> {
        let fail = |reason: String| PlotError {
            path: path.display().to_string(),
            reason,
        };
        let (w, h) = SIZE;
        let mut pixels = vec![0u8; (w * h * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area();
            self.draw(&root).map_err(fail)?;
        }
        let image = image::RgbImage::from_raw(w, h, pixels)
            .ok_or_else(|| fail("the picture has the wrong size".into()))?;
        image.save(path).map_err(|e| fail(e.to_string()))
    }

    /// Writes the chart as `STEM.svg` and `STEM.png`; returns both paths.
    pub fn save_both(&self, stem: &Path) -> Result<[PathBuf; 2], PlotError> {
        let svg = stem.with_extension("svg");
        let png = stem.with_extension("png");
        self.save_svg(&svg)?;
        self.save_png(&png)?;
        Ok([svg, png])
    }
}

fn legend<'a, DB, X>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, plotters::coord::types::RangedCoordf64>>,
) -> Result<(), String>
where
    DB: DrawingBackend + 'a,
    X: Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(log_x: bool, marks: Marks) -> Chart {
        Chart {
            title: "a chart".into(),
            x_desc: "x".into(),
            y_desc: "y".into(),
            log_x,
            x_max: None,
            marks,
            series: vec![
                Series {
                    name: "one".into(),
                    points: vec![(1.0, 10.0), (1e3, 30.0), (1e6, 55.5)],
                    dashed: false,
                },
                Series {
                    name: "two".into(),
                    points: vec![(1.0, 12.0), (1e6, 12.0)],
                    dashed: true,
                },
            ],
        }
    }

    #[test]
    fn charts_are_written_as_svg_and_png() {
        let dir = tempfile::tempdir().unwrap();
        for (i, (log_x, marks)) in [
            (false, Marks::Lines),
            (true, Marks::Lines),
            (false, Marks::Dots),
        ]
        .into_iter()
        .enumerate()
        {
            let [svg, png] = chart(log_x, marks)
                .save_both(&dir.path().join(format!("c{i}")))
                .unwrap();
            let text = std::fs::read_to_string(&svg).unwrap();
            assert!(text.contains("<svg") && text.contains("a chart") && text.contains("one"));
            let img = image::open(&png).unwrap().to_rgb8();
            assert_eq!(img.dimensions(), SIZE);
            // Something is drawn: not every pixel is the white background.
            assert!(img.pixels().any(|p| p.0 != [255, 255, 255]));
        }
    }

    #[test]
    fn ranges_cover_the_points_and_survive_none() {
        let c = chart(true, Marks::Lines);
        let (lo, hi) = c.x_range();
        assert!(lo <= 1.0 && hi >= 1e6);
        let (y0, y1) = c.y_range();
        assert!(y0 <= 10.0 && y1 >= 55.5);
        let empty = Chart {
            series: Vec::new(),
            ..c
        };
        assert!(empty.x_range().0 > 0.0 && empty.x_range().1 > empty.x_range().0);
        assert!(empty.y_range().1 > empty.y_range().0);
    }
}
