//! `comet inspect --svg`: the report's breakdowns as horizontal bar charts in one SVG file.
//!
//! **Layout.** For each call the report breaks down (the prefill, and the last decode step
//! when there is one), a block of six panels: rows *online bytes*, *rounds*, *dealer
//! bytes*; columns *per layer* (in layer order) and *per op kind* (in the report's order:
//! online bytes descending). Each category is one row of the panel, its name left of the
//! bar and its value (in the units of the text report) right of it. With `--compare`,
//! each category has two bars, this plan's above the other's, in the colours of the
//! legend at the top; a category that only one plan has gets a `–` for the other.
//!
//! **Bars.** A bar's length is its value over the panel's largest value; a value of 0 draws
//! no bar (its label still says `0`). Only the bars are filled with a series colour
//! ([`THIS_COLOUR`], [`OTHER_COLOUR`]), besides the legend's two swatches, so a reader
//! (or a test) can count them.
//!
//! Text is SVG `<text>`, laid out by the viewer: plotters is built with its SVG backend
//! only, without system fonts.

use super::InspectError;
use super::report::{CallReport, CompareReport, Report, Row};
use super::units;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// The fill of this plan's bars (`#1F77B4`).
pub const THIS_COLOUR: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
/// The fill of the compared plan's bars (`#FF7F0E`).
pub const OTHER_COLOUR: RGBColor = RGBColor(0xff, 0x7f, 0x0e);

/// The fill of series `k` (0: this plan, 1: the compared one) as the SVG writes it:
/// `#1F77B4`.
///
/// # Panics
///
/// If `k` is above 1 (a plot has at most two plans).
pub fn series_fill(k: usize) -> String {
    let c = [THIS_COLOUR, OTHER_COLOUR][k];
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

/// A figure of a row that a panel plots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Online bytes, both parties together.
    OnlineBytes,
    /// Rounds in which the group sends anything.
    Rounds,
    /// Dealer bytes.
    DealerBytes,
}

impl Metric {
    /// Every metric, in panel order (top to bottom).
    pub const ALL: [Metric; 3] = [Metric::OnlineBytes, Metric::Rounds, Metric::DealerBytes];

    /// The panel title's word for it.
    pub fn title(self) -> &'static str {
        match self {
            Metric::OnlineBytes => "online bytes",
            Metric::Rounds => "rounds",
            Metric::DealerBytes => "dealer bytes",
        }
    }

    /// The row's value.
    pub fn value(self, r: &Row) -> f64 {
        match self {
            Metric::OnlineBytes => r.amounts.online_bytes(),
            Metric::Rounds => r.amounts.rounds as f64,
            Metric::DealerBytes => r.amounts.offline_bytes(),
        }
    }

    /// The value as the text report prints it (`1.23 MiB`, `1,234`).
    pub fn label(self, r: &Row) -> String {
        match self {
            Metric::OnlineBytes => units::bits_as_bytes(r.amounts.online_bits),
            Metric::Rounds => units::count(r.amounts.rounds),
            Metric::DealerBytes => units::bits_as_bytes(r.amounts.offline_bits),
        }
    }
}

/// How a panel groups a call's nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breakdown {
    /// [`CallReport::by_layer`].
    Layer,
    /// [`CallReport::by_op_kind`].
    OpKind,
}

impl Breakdown {
    /// Both, in panel order (left to right).
    pub const ALL: [Breakdown; 2] = [Breakdown::Layer, Breakdown::OpKind];

    /// The panel title's words for it.
    pub fn title(self) -> &'static str {
        match self {
            Breakdown::Layer => "per layer",
            Breakdown::OpKind => "per op kind",
        }
    }

    /// The call's rows.
    pub fn rows(self, c: &CallReport) -> &[Row] {
        match self {
            Breakdown::Layer => &c.by_layer,
            Breakdown::OpKind => &c.by_op_kind,
        }
    }
}

/// The title of a panel: `prefill (seq 128, past 0): online bytes per layer`.
pub fn panel_title(call: &str, c: &CallReport, m: Metric, b: Breakdown) -> String {
    format!(
        "{call} (seq {}, past {}): {} {}",
        c.seq,
        c.past,
        m.title(),
        b.title()
    )
}

/// The calls a report breaks down, with their names (`prefill`, `last decode step`).
pub fn calls(r: &Report) -> Vec<(&'static str, &CallReport)> {
    let mut out = vec![("prefill", &r.prefill)];
    if let Some(d) = &r.last_decode {
        out.push(("last decode step", d));
    }
    out
}

/// One plan's report as an SVG document.
pub fn svg(r: &Report) -> Result<String, InspectError> {
    draw(&[r])
}

/// Two plans side by side as an SVG document (this plan's bars first in each category).
pub fn svg_compare(c: &CompareReport) -> Result<String, InspectError> {
    draw(&[&c.this, &c.other])
}

const PANEL_W: u32 = 640;
const NAME_W: u32 = 170;
const VALUE_W: u32 = 80;
const ROW_H: u32 = 20;
const PANEL_HEAD: u32 = 34;
const PANEL_FOOT: u32 = 26;
const TOP: u32 = 64;
const FONT: &str = "sans-serif";

/// A category of a panel: its name and each plan's row (if the plan has it).
struct Category<'a> {
    name: &'a str,
    rows: Vec<Option<&'a Row>>,
}

/// The categories of a breakdown over every plan, in the first plan's order, then those
/// only a later plan has, in its order.
fn categories<'a>(calls: &[&'a CallReport], b: Breakdown) -> Vec<Category<'a>> {
    let mut out: Vec<Category<'a>> = Vec::new();
    for (k, c) in calls.iter().enumerate() {
        for row in b.rows(c) {
            let i = match out.iter().position(|cat| cat.name == row.name) {
                Some(i) => i,
                None => {
                    out.push(Category {
                        name: &row.name,
                        rows: vec![None; calls.len()],
                    });
                    out.len() - 1
                }
            };
            out[i].rows[k] = Some(row);
        }
    }
    out
}

fn plot_error<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> InspectError {
    InspectError::Svg(e.to_string())
}

fn draw(reports: &[&Report]) -> Result<String, InspectError> {
    let colours = [THIS_COLOUR, OTHER_COLOUR];
    let per_report: Vec<Vec<(&'static str, &CallReport)>> =
        reports.iter().map(|r| calls(r)).collect();
    // The calls every plan has (a plan without decode steps has only the prefill).
    let n_calls = per_report.iter().map(Vec::len).min().unwrap_or(0);
    let series = reports.len() as u32;
    // Blocks of panels: one per call; panel heights follow the category counts.
    let mut blocks = Vec::new();
    let mut height = TOP;
    for k in 0..n_calls {
        let calls: Vec<&CallReport> = per_report.iter().map(|c| c[k].1).collect();
        let cats: Vec<Vec<Category>> = Breakdown::ALL
            .iter()
            .map(|&b| categories(&calls, b))
            .collect();
        let rows = cats.iter().map(Vec::len).max().unwrap_or(0).max(1) as u32;
        let panel_h = PANEL_HEAD + PANEL_FOOT + rows * ROW_H * series;
        blocks.push((per_report[0][k].0, calls, cats, height, panel_h));
        height += 3 * panel_h;
    }
    let width = 2 * PANEL_W;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let title = match reports {
            [one] => format!(
                "comet inspect {}: model {}, approx {}, {} comparisons, prompt {}, generate {}",
                one.plan,
                one.model,
                one.approx,
                comparison_name(one),
                one.settings.prompt,
                one.settings.generate
            ),
            _ => format!(
                "comet inspect {} --compare {}: prompt {}, generate {}",
                reports[0].plan,
                reports[reports.len() - 1].plan,
                reports[0].settings.prompt,
                reports[0].settings.generate
            ),
        };
        root.draw(&Text::new(
            title,
            (12, 10),
            (FONT, 18)
                .into_text_style(&root)
                .pos(Pos::new(HPos::Left, VPos::Top)),
        ))
        .map_err(plot_error)?;
        if reports.len() > 1 {
            let mut x = 12;
            for (r, colour) in reports.iter().zip(colours) {
                root.draw(&Rectangle::new([(x, 40), (x + 14, 52)], colour.filled()))
                    .map_err(plot_error)?;
                let label = format!("{} (model {}, approx {})", r.plan, r.model, r.approx);
                let w = label.chars().count() as i32 * 7 + 40;
                root.draw(&Text::new(
                    label,
                    (x + 20, 46),
                    (FONT, 13)
                        .into_text_style(&root)
                        .pos(Pos::new(HPos::Left, VPos::Center)),
                ))
                .map_err(plot_error)?;
                x += 20 + w;
            }
        }
        for (call, calls, cats, top, panel_h) in &blocks {
            for (col, (&b, cats)) in Breakdown::ALL.iter().zip(cats).enumerate() {
                for (row, &m) in Metric::ALL.iter().enumerate() {
                    let area = root.clone().shrink(
                        (col as u32 * PANEL_W, top + row as u32 * panel_h),
                        (PANEL_W, *panel_h),
                    );
                    let title = panel_title(call, calls[0], m, b);
                    panel(&root, &area, &title, cats, m, &colours).map_err(plot_error)?;
                }
            }
        }
        root.present().map_err(plot_error)?;
    }
    Ok(out)
}

fn comparison_name(r: &Report) -> &'static str {
    match r.comparison {
        comet_ir::Comparison::Fss => "FSS",
        comet_ir::Comparison::Gmw => "GMW",
    }
}

type Area<'a, 'b> = DrawingArea<SVGBackend<'a>, Shift>;
type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

/// One panel: a bar per category and plan, the category's name left of the plotting area
/// and each value right of its bar.
fn panel(
    root: &Area,
    area: &Area,
    title: &str,
    cats: &[Category],
    m: Metric,
    colours: &[RGBColor; 2],
) -> DrawResult {
    let series = cats.first().map_or(1, |c| c.rows.len());
    let n = cats.len().max(1) as f64;
    let max = cats
        .iter()
        .flat_map(|c| c.rows.iter().flatten())
        .map(|r| m.value(r))
        .fold(0.0, f64::max);
    let x_max = if max > 0.0 { max } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 17))
        .margin_left(NAME_W)
        .margin_right(VALUE_W)
        .margin_top(4)
        .x_label_area_size(PANEL_FOOT - 6)
        .build_cartesian_2d(0.0..x_max, 0.0..n)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .light_line_style(TRANSPARENT)
        .x_labels(4)
        .x_label_style((FONT, 12))
        .x_label_formatter(&|v| match m {
            Metric::Rounds => format!("{v:.0}"),
            _ => units::bytes(*v),
        })
        .draw()?;
    let name_style = (FONT, 15)
        .into_text_style(root)
        .pos(Pos::new(HPos::Right, VPos::Center));
    let value_style = (FONT, 12)
        .into_text_style(root)
        .pos(Pos::new(HPos::Left, VPos::Center));
    let band = 0.8 / series as f64;
    for (i, cat) in cats.iter().enumerate() {
        // The first category on top.
        let y_top = n - i as f64 - 0.1;
        let (x0, y_mid) = chart.backend_coord(&(0.0, n - i as f64 - 0.5));
        root.draw(&Text::new(
            cat.name.to_string(),
            (x0 - 6, y_mid),
            name_style.clone(),
        ))?;
        for (s, row) in cat.rows.iter().enumerate() {
            let y1 = y_top - s as f64 * band;
            let y0 = y1 - band;
            let value = row.map_or(0.0, |r| m.value(r));
            if value > 0.0 {
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(0.0, y0), (value, y1)],
                    colours[s].filled(),
                )))?;
            }
            let label = row.map_or_else(|| "–".to_string(), |r| m.label(r));
            let (x, y) = chart.backend_coord(&(value, (y0 + y1) / 2.0));
            root.draw(&Text::new(label, (x + 4, y), value_style.clone()))?;
        }
    }
    Ok(())
}
