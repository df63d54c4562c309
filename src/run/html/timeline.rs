//! The timeline of a run as inline SVG, Gantt-like: a row per step execution (and per nested
//! step of a delegation), its span, and on it every attempt (each retry, fallback and turn of
//! an agent loop) with the wait before it (backoff and rate-limit waits).

use std::fmt::Write as _;

use indexmap::IndexMap;

use super::super::journal::AttemptRecord;
use super::view::RunView;
use super::{esc, ms, status_word};

const LABEL_W: u32 = 220;
const PLOT_W: u32 = 880;
const ROW_H: u32 = 24;
const TOP: u32 = 28;

struct Row<'v> {
    name: String,
    /// Index in [`RunView::steps`].
    step: Option<usize>,
    attempts: Vec<&'v AttemptRecord>,
}

/// A tick spacing of 1, 2 or 5 times a power of ten giving at most 8 ticks over `total` ms.
fn tick(total: u64) -> u64 {
    let mut p = 1u64;
    loop {
        for m in [1, 2, 5] {
            let t = p.saturating_mul(m);
            if total / t <= 8 {
                return t;
            }
        }
        p = p.saturating_mul(10);
    }
}

/// The SVG; `anchor(i)` is the id of step `i`'s section.
pub(super) fn render(view: &RunView, anchor: &dyn Fn(usize) -> String) -> String {
    let mut rows: IndexMap<String, Row> = IndexMap::new();
    for (i, s) in view.steps.iter().enumerate() {
        rows.insert(
            s.report.name.clone(),
            Row {
                name: s.report.name.clone(),
                step: Some(i),
                attempts: Vec::new(),
            },
        );
    }
    for a in &view.attempts {
        if !rows.contains_key(&a.step) {
            // A nested step (`lead/scout#2.1`): after its top step's row.
            let top = a.step.split('/').next().unwrap_or(&a.step);
            let at = rows.get_index_of(top).map_or(rows.len(), |i| {
                let mut j = i + 1;
                while j < rows.len()
                    && rows
                        .get_index(j)
                        .is_some_and(|(k, _)| k.starts_with(&format!("{top}/")))
                {
                    j += 1;
                }
                j
            });
            rows.shift_insert(
                at,
                a.step.clone(),
                Row {
                    name: a.step.clone(),
                    step: None,
                    attempts: Vec::new(),
                },
            );
        }
        if let Some(r) = rows.get_mut(&a.step) {
            r.attempts.push(a);
        }
    }
    let last = view
        .attempts
        .iter()
        .map(|a| a.finished_ms)
        .chain(view.steps.iter().filter_map(|s| s.report.finished_ms))
        .max()
        .unwrap_or(0);
    let total = view.wall_ms.max(last).max(1);
    let x = |t: u64| LABEL_W + ((t.min(total) as f64 / total as f64) * PLOT_W as f64) as u32;
    let height = TOP + rows.len().max(1) as u32 * ROW_H + 12;
    let width = LABEL_W + PLOT_W + 20;
    let mut svg = format!(
        r#"<svg id="timeline-svg" class="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="when each step and attempt ran">"#
    );
    svg.push_str(r#"<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" class="hatch-bg"/><line x1="0" y1="0" x2="0" y2="6" class="hatch-line"/></pattern></defs>"#);
    // Axis.
    let step = tick(total);
    let mut t = 0;
    while t <= total {
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{0}" y1="{1}" x2="{0}" y2="{2}"/><text class="tick" x="{0}" y="{3}">{4}</text>"#,
            x(t),
            TOP - 6,
            height - 8,
            TOP - 10,
            ms(t)
        );
        match t.checked_add(step) {
            Some(n) => t = n,
            None => break,
        }
    }
    for (k, row) in rows.values().enumerate() {
        let y = TOP + k as u32 * ROW_H;
        let (status, span, link) = match row.step.map(|i| (i, &view.steps[i])) {
            Some((i, s)) => (
                status_word(s),
                s.report.started_ms.zip(s.report.finished_ms),
                format!(r#" data-step-ref="{}" tabindex="0""#, esc(&anchor(i))),
            ),
            None => ("nested", None, String::new()),
        };
        let _ = write!(
            svg,
            r#"<g class="row status-{status}" data-step="{}"{link}><text class="row-label" x="{}" y="{}">{}</text>"#,
            esc(&row.name),
            LABEL_W - 8,
            y + 16,
            esc(&super::dag_cut(&row.name, 30)),
        );
        if let Some((s, f)) = span {
            let _ = write!(
                svg,
                r#"<rect class="span{}" x="{}" y="{}" width="{}" height="{}"><title>{}</title></rect>"#,
                if row.attempts.is_empty() {
                    " solid"
                } else {
                    ""
                },
                x(s),
                y + 3,
                x(f).saturating_sub(x(s)).max(2),
                ROW_H - 6,
                esc(&format!(
                    "{}: {status}, {} (from {} to {})",
                    row.name,
                    ms(f.saturating_sub(s)),
                    ms(s),
                    ms(f)
                ))
            );
        }
        for a in &row.attempts {
            if a.wait_ms > 0 {
                let from = a.started_ms.saturating_sub(a.wait_ms);
                let _ = write!(
                    svg,
                    r#"<rect class="wait" x="{}" y="{}" width="{}" height="{}"><title>{}</title></rect>"#,
                    x(from),
                    y + 6,
                    x(a.started_ms).saturating_sub(x(from)).max(1),
                    ROW_H - 12,
                    esc(&format!(
                        "{}: waited {} before attempt {} (backoff and rate limits)",
                        a.step,
                        ms(a.wait_ms),
                        a.attempt
                    ))
                );
            }
            let class = if a.error.is_some() {
                "failed"
            } else if a.truncated {
                "truncated"
            } else {
                "ok"
            };
            let mut title = format!(
                "{}: attempt {}{} · {}{} · {} · {} in / {} out",
                a.step,
                a.attempt,
                a.turn.map(|t| format!(", turn {t}")).unwrap_or_default(),
                a.model,
                a.served_model
                    .as_ref()
                    .filter(|s| **s != a.model)
                    .map(|s| format!(" (served by {s})"))
                    .unwrap_or_default(),
                ms(a.finished_ms.saturating_sub(a.started_ms)),
                a.usage.input_tokens,
                a.usage.output_tokens
            );
            if a.truncated {
                title.push_str(" · cut by the token limit");
            }
            if let Some(e) = &a.error {
                let _ = write!(title, " · {e}");
            }
            let _ = write!(
                svg,
                r#"<rect class="attempt {class}" x="{}" y="{}" width="{}" height="{}"><title>{}</title></rect>"#,
                x(a.started_ms),
                y + 6,
                x(a.finished_ms).saturating_sub(x(a.started_ms)).max(2),
                ROW_H - 12,
                esc(&title)
            );
        }
        svg.push_str("</g>");
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::tick;

    #[test]
    fn ticks_are_round_and_few() {
        assert_eq!(tick(1), 1);
        assert_eq!(tick(8), 1);
        assert_eq!(tick(9), 2);
        assert_eq!(tick(1_000), 200);
        assert_eq!(tick(u64::MAX), 5_000_000_000_000_000_000);
    }
}
