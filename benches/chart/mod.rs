//! The create bench's picture: one horizontal bar per tool and preallocation mode, the
//! median wall time on a logarithmic axis (the modes span milliseconds to seconds), written
//! as SVG with `plotters`.
//!
//! Owns: the chart's layout and colours. Must not: time anything or decide a target; it
//! draws the medians it is given.

use std::path::Path;
use std::time::Duration;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One preallocation mode's medians.
pub struct Bar {
    /// The mode and size, e.g. "metadata, 1 TiB".
    pub label: String,
    pub qpool: Duration,
    pub qemu_img: Duration,
}

const QPOOL_COLOUR: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const QEMU_IMG_COLOUR: RGBColor = RGBColor(0xbb, 0xbb, 0xbb);

/// "8.25 ms", "162 ms", "4.45 s": three significant digits.
fn seconds(s: f64) -> String {
    let ms = s * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{s:.2} s")
    }
}

/// Writes the chart of `bars` to `path`. `subtitle` names the machine and the run.
pub fn write(path: &Path, bars: &[Bar], subtitle: &str) -> Result<(), String> {
    let rows = i32::try_from(bars.len() * 2).map_err(|_| "too many bars".to_string())?;
    if rows == 0 {
        return Err("no create case ran".into());
    }
    let all = bars.iter().flat_map(|b| [b.qpool, b.qemu_img]);
    let lo = all
        .clone()
        .min()
        .unwrap_or_default()
        .as_secs_f64()
        .max(1e-4);
    let hi = all.max().unwrap_or_default().as_secs_f64().max(lo * 2.0);
    let height = 120 + 46 * u32::try_from(rows).unwrap_or(8);
    let area = SVGBackend::new(path, (900, height)).into_drawing_area();
    let failed = |e: DrawingAreaErrorKind<_>| format!("{}: {e}", path.display());
    area.fill(&WHITE).map_err(failed)?;
    let mut chart = ChartBuilder::on(&area)
        .caption(
            "qcow2 create, median wall time (log scale; shorter is faster)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(250)
        .build_cartesian_2d(
            (lo / 2.0..hi * 4.0).log_scale(),
            (0..rows - 1).into_segmented(),
        )
        .map_err(failed)?;
    // Segment 0 is at the bottom; the first mode's qpool bar goes on top.
    let row_of = |k: i32| rows - 1 - k;
    let label_of = |segment: i32| -> String {
        let k = row_of(segment);
        let (case, tool) = (usize::try_from(k / 2).unwrap_or(0), k % 2);
        bars.get(case).map_or(String::new(), |b| {
            if tool == 0 {
                format!("{}: qpool", b.label)
            } else {
                format!("{}: qemu-img", b.label)
            }
        })
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(TRANSPARENT)
        .x_labels(6)
        .y_labels(usize::try_from(rows).unwrap_or(0))
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(k) => label_of(*k),
            _ => String::new(),
        })
        .x_desc(subtitle)
        .x_label_formatter(&|s| seconds(*s))
        .draw()
        .map_err(failed)?;
    for (i, b) in bars.iter().enumerate() {
        let k = i32::try_from(i * 2).unwrap_or(0);
        let ratio = b.qemu_img.as_secs_f64() / b.qpool.as_secs_f64().max(1e-9);
        for (row, time, colour, note) in [
            (
                row_of(k),
                b.qpool,
                QPOOL_COLOUR,
                if ratio >= 1.0 {
                    format!("{} ({ratio:.1}× faster)", seconds(b.qpool.as_secs_f64()))
                } else {
                    format!(
                        "{} ({:.1}× slower)",
                        seconds(b.qpool.as_secs_f64()),
                        1.0 / ratio
                    )
                },
            ),
            (
                row_of(k + 1),
                b.qemu_img,
                QEMU_IMG_COLOUR,
                seconds(b.qemu_img.as_secs_f64()),
            ),
        ] {
            let t = time.as_secs_f64().max(lo / 2.0);
            let mut bar = Rectangle::new(
                [
                    (lo / 2.0, SegmentValue::Exact(row)),
                    (t, SegmentValue::Exact(row + 1)),
                ],
                colour.filled(),
            );
            bar.set_margin(4, 4, 0, 0);
            chart.draw_series([bar]).map_err(failed)?;
            chart
                .draw_series([Text::new(
                    format!("  {note}"),
                    (t, SegmentValue::CenterOf(row)),
                    TextStyle::from(("sans-serif", 14).into_font())
                        .pos(Pos::new(HPos::Left, VPos::Center)),
                )])
                .map_err(failed)?;
        }
    }
    area.present().map_err(failed)?;
    Ok(())
}
