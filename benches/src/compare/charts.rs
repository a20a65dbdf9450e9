//! compare's PNG charts (plotters, pure Rust): throughput per workload and target, and
//! latency percentiles per workload and target, one small panel per report row, every
//! target in the same colour everywhere.
//!
//! Text needs a TrueType font, read at run time: `POPDB_BENCH_FONT` if set, else DejaVu
//! Sans where Debian's `fonts-dejavu-core` puts it. Without one the charts are skipped
//! with a line saying what to install; the table, the ratio lines and the JSON do not
//! depend on them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use plotters::prelude::*;
use serde_json::Value;

use super::report::{figure, format_ns, latency};
use super::target::TargetKind;
use crate::measure::spread;

/// Where the font is looked for when `POPDB_BENCH_FONT` is not set.
const FONT_PATHS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];
/// Panels per line of a chart.
const COLUMNS: usize = 4;
const PANEL_WIDTH: u32 = 420;
const PANEL_HEIGHT: u32 = 260;
/// The strip at the top with the title and the legend.
const HEADER_HEIGHT: u32 = 70;
/// One colour per target, in `TargetKind::ALL` order (Tableau 10).
const COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(174, 199, 232),
    RGBColor(44, 160, 44),
    RGBColor(152, 223, 138),
    RGBColor(214, 39, 40),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(127, 127, 127),
    RGBColor(23, 190, 207),
];

/// The charts written.
#[derive(Debug)]
pub struct Charts {
    pub throughput: PathBuf,
    pub latency: PathBuf,
}

/// Writes `<stem>-throughput.png` and `<stem>-latency.png` into `out`.
///
/// # Errors
/// No font found (the message says what to install), or plotters' own.
pub fn write(
    out: &Path,
    stem: &str,
    title: &str,
    order: &[TargetKind],
    rows: &[String],
    samples: &BTreeMap<TargetKind, Vec<Value>>,
) -> Result<Charts> {
    register_font()?;
    let charts = Charts {
        throughput: out.join(format!("{stem}-throughput.png")),
        latency: out.join(format!("{stem}-latency.png")),
    };
    let panels = |draw: &dyn Fn(&DrawingArea<BitMapBackend<'_>, _>, &str) -> Result<()>,
                  path: &Path,
                  heading: &str,
                  legend: &str|
     -> Result<()> {
        let lines = rows.len().div_ceil(COLUMNS).max(1);
        let size = (
            PANEL_WIDTH * COLUMNS as u32,
            HEADER_HEIGHT + PANEL_HEIGHT * u32::try_from(lines)?,
        );
        let root = BitMapBackend::new(path, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let (header, body) = root.split_vertically(HEADER_HEIGHT);
        draw_header(&header, &format!("{title}: {heading}"), legend, order)?;
        for (area, row) in body.split_evenly((lines, COLUMNS)).iter().zip(rows) {
            draw(area, row)?;
        }
        root.present()
            .with_context(|| format!("write {}", path.display()))
    };
    panels(
        &|area, row| throughput_panel(area, row, order, samples),
        &charts.throughput,
        "operations per second (bar: median of the rounds; line: min to max)",
        "",
    )?;
    panels(
        &|area, row| latency_panel(area, row, order, samples),
        &charts.latency,
        "latency per operation, log scale (medians of the rounds' percentiles)",
        "dark: p50   middle: p99   light: p99.9",
    )?;
    Ok(charts)
}

fn plot_error<E: std::error::Error + Send + Sync + 'static>(
    e: DrawingAreaErrorKind<E>,
) -> anyhow::Error {
    anyhow!("plotters: {e}")
}

/// Registers the font as plotters' `sans-serif`, once per process.
fn register_font() -> Result<()> {
    static REGISTERED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let path = std::env::var_os("POPDB_BENCH_FONT")
                .map(PathBuf::from)
                .or_else(|| FONT_PATHS.iter().map(PathBuf::from).find(|p| p.exists()))
                .ok_or_else(|| {
                    format!(
                        "no font for the charts: install fonts-dejavu-core (apt) or set \
                         POPDB_BENCH_FONT to a .ttf file (looked in {})",
                        FONT_PATHS.join(", ")
                    )
                })?;
            let bytes = std::fs::read(&path)
                .map_err(|e| format!("read the font {}: {e}", path.display()))?;
            // plotters keeps fonts for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| format!("{} is not a font plotters can read", path.display()))
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

fn colour(kind: TargetKind) -> RGBColor {
    let index = TargetKind::ALL
        .iter()
        .position(|k| *k == kind)
        .expect("every kind is in ALL");
    COLOURS[index % COLOURS.len()]
}

fn draw_header(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    title: &str,
    legend: &str,
    order: &[TargetKind],
) -> Result<()> {
    area.draw(&Text::new(title, (10, 8), ("sans-serif", 18)))
        .map_err(plot_error)?;
    let mut x = 10;
    for &kind in order {
        area.draw(&Rectangle::new(
            [(x, 40), (x + 14, 54)],
            colour(kind).filled(),
        ))
        .map_err(plot_error)?;
        area.draw(&Text::new(kind.name(), (x + 18, 40), ("sans-serif", 14)))
            .map_err(plot_error)?;
        x += 110;
    }
    if !legend.is_empty() {
        area.draw(&Text::new(legend, (x + 20, 40), ("sans-serif", 14)))
            .map_err(plot_error)?;
    }
    Ok(())
}

/// Median, min and max of a figure over the rounds, per target that has it.
fn per_target(
    order: &[TargetKind],
    samples: &BTreeMap<TargetKind, Vec<Value>>,
    get: impl Fn(&Value) -> Option<f64>,
) -> Vec<(TargetKind, f64, f64, f64)> {
    order
        .iter()
        .filter_map(|&kind| {
            let values: Vec<f64> = samples.get(&kind)?.iter().filter_map(&get).collect();
            (!values.is_empty()).then(|| {
                let s = spread(&values);
                (kind, s.median, s.min, s.max)
            })
        })
        .collect()
}

fn throughput_panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    row: &str,
    order: &[TargetKind],
    samples: &BTreeMap<TargetKind, Vec<Value>>,
) -> Result<()> {
    let bars = per_target(order, samples, |s| figure(s, row, "ops_per_sec"));
    let top = bars.iter().map(|b| b.3).fold(0.0, f64::max);
    if bars.is_empty() || top <= 0.0 {
        return Ok(());
    }
    let mut chart = ChartBuilder::on(area)
        .caption(row, ("sans-serif", 15))
        .margin(6)
        .x_label_area_size(4)
        .y_label_area_size(52)
        .build_cartesian_2d(0.0..bars.len() as f64, 0.0..top * 1.08)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .y_labels(5)
        .y_label_formatter(&|v| si(*v))
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(plot_error)?;
    for (i, &(kind, median, min, max)) in bars.iter().enumerate() {
        let x = i as f64;
        chart
            .draw_series([Rectangle::new(
                [(x + 0.12, 0.0), (x + 0.88, median)],
                colour(kind).filled(),
            )])
            .map_err(plot_error)?;
        chart
            .draw_series([PathElement::new(
                vec![(x + 0.5, min), (x + 0.5, max)],
                BLACK.stroke_width(1),
            )])
            .map_err(plot_error)?;
    }
    Ok(())
}

fn latency_panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    row: &str,
    order: &[TargetKind],
    samples: &BTreeMap<TargetKind, Vec<Value>>,
) -> Result<()> {
    let quantiles = ["p99_9", "p99", "p50"];
    let per_quantile: Vec<Vec<(TargetKind, f64, f64, f64)>> = quantiles
        .iter()
        .map(|q| per_target(order, samples, |s| latency(s, row, q).filter(|v| *v > 0.0)))
        .collect();
    let kinds: Vec<TargetKind> = per_quantile[0].iter().map(|b| b.0).collect();
    let all = per_quantile.iter().flatten().map(|b| b.1);
    let (low, high) = all.fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if kinds.is_empty() || high <= 0.0 {
        return Ok(());
    }
    let mut chart = ChartBuilder::on(area)
        .caption(row, ("sans-serif", 15))
        .margin(6)
        .x_label_area_size(4)
        .y_label_area_size(60)
        .build_cartesian_2d(
            0.0..kinds.len() as f64,
            ((low / 2.0).max(1.0)..(high * 2.0)).log_scale(),
        )
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .y_labels(5)
        .y_label_formatter(&|v| format_ns(*v))
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(plot_error)?;
    let floor = (low / 2.0).max(1.0);
    for (shade, bars) in per_quantile.iter().enumerate() {
        for &(kind, median, _, _) in bars {
            let Some(i) = kinds.iter().position(|k| *k == kind) else {
                continue;
            };
            let x = i as f64;
            // p99.9 light and widest, p50 dark and narrowest: nested, so all three show.
            let inset = 0.1 + 0.1 * shade as f64;
            let style = colour(kind).mix(0.35 + 0.3 * shade as f64).filled();
            chart
                .draw_series([Rectangle::new(
                    [(x + inset, floor), (x + 1.0 - inset, median)],
                    style,
                )])
                .map_err(plot_error)?;
        }
    }
    Ok(())
}

/// 1234567 as `1.23M`.
fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}K", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// Writes the charts and prints where, or prints why not; the run goes on either way.
pub fn write_or_explain(
    out: &Path,
    stem: &str,
    title: &str,
    order: &[TargetKind],
    rows: &[String],
    samples: &BTreeMap<TargetKind, Vec<Value>>,
) -> Option<Charts> {
    match write(out, stem, title, order, rows, samples) {
        Ok(charts) => {
            println!("chart {}", charts.throughput.display());
            println!("chart {}", charts.latency.display());
            Some(charts)
        }
        Err(e) => {
            println!("charts skipped: {e:#}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si_keeps_three_digits() {
        assert_eq!(si(1_234_567.0), "1.23M");
        assert_eq!(si(45_600.0), "46K");
        assert_eq!(si(27.0), "27");
    }

    #[test]
    fn charts_are_written_when_a_font_is_there() {
        if register_font().is_err() {
            return;
        }
        let sample = serde_json::json!({"workloads": [{
            "workload": "fillrandom",
            "ops_per_sec": 1000.0,
            "latency_ns": {"p50": 1000.0, "p99": 5000.0, "p99_9": 9000.0},
        }]});
        let samples = BTreeMap::from([(TargetKind::Lsm, vec![sample])]);
        let dir = tempfile::tempdir().expect("a temporary directory");
        let charts = write(
            dir.path(),
            "t",
            "test",
            &[TargetKind::Lsm],
            &["fillrandom".to_string()],
            &samples,
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        for path in [charts.throughput, charts.latency] {
            let bytes = std::fs::read(&path).expect("the chart was written");
            assert!(
                bytes.starts_with(b"\x89PNG"),
                "{} is not a PNG",
                path.display()
            );
        }
    }
}
