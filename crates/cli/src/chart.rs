//! The allocation chart: allocation % against arrived workload %, one line per policy.

use std::path::Path;

use anyhow::{Context, Result};
use gigawatt_sim::fgd::SummaryRow;
use plotters::prelude::*;

const COLORS: [RGBColor; 8] = [
    RGBColor(0x99, 0x99, 0x99),
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// Writes an SVG chart of one workload's summary rows.
pub fn write(path: &Path, workload: &str, rows: &[&SummaryRow], max_arrived: u32) -> Result<()> {
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("GPU allocation vs arrived workload: {workload}"), ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..f64::from(max_arrived), 0f64..100f64)?;
        chart
            .configure_mesh()
            .x_desc("arrived workload (% of cluster GPU capacity)")
            .y_desc("GPU allocation (%)")
            .draw()?;
        let mut policies: Vec<&str> = Vec::new();
        for r in rows {
            if !policies.contains(&r.policy.as_str()) {
                policies.push(&r.policy);
            }
        }
        for (i, policy) in policies.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let points: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.policy == *policy)
                .map(|r| (f64::from(r.arrived_pct), r.alloc_pct_mean))
                .collect();
            let last = points.last().map_or(0.0, |p| p.1);
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                .label(format!("{policy} ({last:.2}%)"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        }
        legend(&mut chart)?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| anyhow::anyhow!("{e}")).with_context(|| format!("writing chart {}", path.display()))
}

/// Writes an SVG chart of site draw against the grid budget over time, one line per
/// oversubscription ratio.
pub fn power(path: &Path, results: &[gigawatt_sim::power::RatioResult], budget_mw: f64) -> Result<()> {
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    let end = results.iter().filter_map(|r| r.series.t.last().copied()).fold(1.0, f64::max);
    let top = results.iter().flat_map(|r| r.series.draw_mw.iter().copied()).fold(budget_mw, f64::max) * 1.08;
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Site draw against the grid budget (peak per control interval)", ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..end / 60.0, 0f64..top)?;
        chart.configure_mesh().x_desc("time (minutes)").y_desc("facility draw (MW)").draw()?;
        chart
            .draw_series(LineSeries::new(
                vec![(0.0, budget_mw), (end / 60.0, budget_mw)],
                BLACK.stroke_width(2),
            ))?
            .label(format!("budget {budget_mw} MW"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.stroke_width(2)));
        for (i, r) in results.iter().enumerate() {
            let color = COLORS[(i + 1) % COLORS.len()];
            // At most ~2,000 points a line: the highest draw of each bucket.
            let step = (r.series.t.len() / 2000).max(1);
            let points: Vec<(f64, f64)> = r
                .series
                .t
                .chunks(step)
                .zip(r.series.draw_mw.chunks(step))
                .map(|(t, d)| (t[0] / 60.0, d.iter().copied().fold(0.0, f64::max)))
                .collect();
            let s = &r.summary;
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(1)))?
                .label(format!(
                    "{:+.0}%: {} GPUs, peak {:.2} MW",
                    s.oversubscription * 100.0,
                    s.gpus,
                    s.peak_draw_mw
                ))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        }
        legend(&mut chart)?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| anyhow::anyhow!("{e}")).with_context(|| format!("writing chart {}", path.display()))
}

/// The legend both charts draw: lower right, framed.
fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<
        'a,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
) -> Result<(), Box<dyn std::error::Error + 'a>>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()?;
    Ok(())
}

/// Writes the `sim queue` chart: GPU utilisation over time per policy (left), and each
/// tenant's use against its entitlement per policy (right, log–log; the diagonal is
/// fairness).
pub fn queue(path: &Path, runs: &[gigawatt_sim::queue::QueueRun]) -> Result<()> {
    let root = SVGBackend::new(path, (1400, 600)).into_drawing_area();
    let (left, right) = root.split_horizontally(760);
    let end = runs.iter().filter_map(|r| r.series.last().map(|p| p.0)).fold(1.0, f64::max);
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&left)
            .caption("GPU utilisation with a standing queue", ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..end, 0f64..100.0)?;
        chart.configure_mesh().x_desc("time (hours)").y_desc("GPUs allocated (%)").draw()?;
        for (i, r) in runs.iter().enumerate() {
            let color = COLORS[(i + 1) % COLORS.len()];
            let s = &r.summary;
            chart
                .draw_series(LineSeries::new(r.series.iter().copied(), color.stroke_width(1)))?
                .label(format!("{}: {:.1}%", s.policy, s.gpu_utilisation_pct))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        }
        legend(&mut chart)?;
        // Shares: per tenant, entitled vs used (mean GPUs over its backlogged samples).
        let pts = |r: &gigawatt_sim::queue::QueueRun| -> Vec<(f64, f64)> {
            r.shares
                .iter()
                .filter(|s| s.entitled > 0.0 && s.used > 0.0)
                .map(|s| (s.entitled.log10(), s.used.log10()))
                .collect()
        };
        let all: Vec<(f64, f64)> = runs.iter().flat_map(pts).collect();
        let lo = all.iter().map(|p| p.0.min(p.1)).fold(f64::INFINITY, f64::min).min(0.0);
        let hi = all.iter().map(|p| p.0.max(p.1)).fold(1.0, f64::max);
        let mut chart = ChartBuilder::on(&right)
            .caption("Each backlogged tenant: use against entitlement", ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(lo..hi, lo..hi)?;
        chart
            .configure_mesh()
            .x_desc("entitled (log10 GPU-samples)")
            .y_desc("used (log10 GPU-samples)")
            .draw()?;
        chart.draw_series(LineSeries::new(vec![(lo, lo), (hi, hi)], BLACK.stroke_width(1)))?;
        for (i, r) in runs.iter().enumerate() {
            let color = COLORS[(i + 1) % COLORS.len()];
            chart
                .draw_series(pts(r).into_iter().map(|p| Circle::new(p, 2, color.mix(0.5).filled())))?
                .label(format!("{}: Jain {:.3}", r.summary.policy, r.summary.jain_fairness))
                .legend(move |(x, y)| Circle::new((x + 9, y), 4, color.filled()));
        }
        legend(&mut chart)?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| anyhow::anyhow!("{e}")).with_context(|| format!("writing chart {}", path.display()))
}
