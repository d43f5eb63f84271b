//! `audit.html`: one self-contained page (styles inline, charts as inline SVG, gallery
//! pictures as embedded PNG), readable offline and attachable to a ticket. It shows what
//! `audit.json` holds: per model the accuracy, per-class table, confusion matrix and
//! reliability diagram; per method the in-brain fractions of correct and wrong predictions,
//! the share of correct predictions whose evidence lies mostly outside the brain, and the
//! gallery of the furthest outside.

use std::fmt::Write;

use base64::Engine as _;

use super::report::{AuditReport, GalleryEntry, MethodAudit, ModelAudit};

const STYLE: &str = "
body{font-family:'DejaVu Sans',Arial,sans-serif;margin:0;background:#f6f7f9;color:#1d232b}
header{background:#1d232b;color:#fff;padding:18px 32px}
header h1{margin:0 0 6px 0;font-size:24px}
.banner{background:#b00020;color:#fff;font-weight:bold;padding:6px 32px;letter-spacing:.05em}
.untrained{background:#8a5a00}
main{padding:8px 32px 40px 32px;max-width:1200px}
section{background:#fff;border:1px solid #d9dde3;border-radius:6px;padding:16px 20px;margin:18px 0}
h2{margin:4px 0 12px 0}h3{margin:18px 0 8px 0}
table{border-collapse:collapse;margin:6px 0 12px 0}
td,th{border:1px solid #d9dde3;padding:4px 9px;text-align:right;font-variant-numeric:tabular-nums}
th{background:#eef1f4}td.l,th.l{text-align:left}
.headline{font-size:18px;margin:8px 0}.headline b{color:#b00020}
.charts{display:flex;flex-wrap:wrap;gap:32px;align-items:flex-start}.charts>div{flex:0 0 auto}
.gallery{display:flex;flex-wrap:wrap;gap:14px}
figure{margin:0;width:360px}figure img{width:360px;border:1px solid #d9dde3}
figcaption{font-size:12px;color:#444;word-break:break-all}
.muted{color:#666;font-size:13px}
";

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_string(), |v| format!("{:.1}%", 100.0 * v))
}

fn decimal(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_string(), |v| format!("{v:.3}"))
}

/// The page of `report`.
pub fn page(report: &AuditReport) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>dicom-xai audit</title><style>{STYLE}</style></head><body>\
         <header><h1>dicom-xai audit</h1><div>{} &middot; data: {} &middot; {}</div></header>\
         <div class=\"banner\">NOT FOR DIAGNOSTIC USE</div>",
        escape(&report.software),
        escape(
            &report
                .data
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        match report.limit {
            Some(limit) => format!("at most {limit} images per label"),
            None => "every image".to_string(),
        }
    );
    if report.models.iter().any(|m| !m.trained) {
        html.push_str(
            "<div class=\"banner untrained\">UNTRAINED MODEL: its figures are of random \
             weights</div>",
        );
    }
    html.push_str("<main>");
    summary(&mut html, report);
    for model in &report.models {
        model_section(&mut html, model, report.in_brain_threshold);
    }
    failures(&mut html, report);
    html.push_str("</main></body></html>\n");
    html
}

fn summary(html: &mut String, report: &AuditReport) {
    html.push_str("<section id=\"summary\"><h2>Summary</h2>");
    // the research's finding, as one sentence per model: its first method's share
    for model in &report.models {
        let first = model.methods.iter().find(|m| m.error.is_none());
        if let Some((method, share)) =
            first.and_then(|m| m.outside_brain_share_correct.map(|s| (m, s)))
        {
            let _ = write!(
                html,
                "<p class=\"headline\">{}: accuracy {}; <b>{:.1}% of its correct predictions \
                 rest mostly outside the brain</b> by {} ({} of {}).</p>",
                escape(&model.model),
                percent(model.accuracy),
                100.0 * share,
                escape(&method.method),
                (share * method.correct_explained as f64).round() as usize,
                method.correct_explained
            );
        }
    }
    let mut methods: Vec<&str> = Vec::new();
    for method in report.models.iter().flat_map(|m| &m.methods) {
        if !methods.contains(&method.method.as_str()) {
            methods.push(&method.method);
        }
    }
    html.push_str(
        "<table><tr><th class=\"l\">model</th><th>trained</th><th>images</th>\
         <th>accuracy</th><th>ECE</th>",
    );
    for method in &methods {
        let _ = write!(html, "<th>{}: correct, mostly outside</th>", escape(method));
    }
    html.push_str("</tr>");
    for model in &report.models {
        let _ = write!(
            html,
            "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
            escape(&model.model),
            if model.trained { "yes" } else { "UNTRAINED" },
            model.images,
            percent(model.accuracy),
            decimal(model.ece)
        );
        for name in &methods {
            let share = model
                .methods
                .iter()
                .find(|m| m.method == *name)
                .and_then(|m| m.outside_brain_share_correct);
            let _ = write!(html, "<td><b>{}</b></td>", percent(share));
        }
        html.push_str("</tr>");
    }
    let _ = write!(
        html,
        "</table><p class=\"muted\">Each image is explained for its predicted class; \
         \"mostly outside\": the map's in-brain fraction is below {:.2} (flag \
         evidence-outside-brain). Deletion/insertion curves: {} steps each.</p></section>",
        report.in_brain_threshold, report.faithfulness_steps
    );
}

fn model_section(html: &mut String, model: &ModelAudit, threshold: f32) {
    let _ = write!(
        html,
        "<section id=\"model-{0}\"><h2>{0} <span class=\"muted\">version {1}, sha256 {2}</span>\
         </h2><p class=\"headline\">accuracy {3} on {4} images; expected calibration error {5}</p>",
        escape(&model.model),
        escape(&model.version),
        escape(&model.sha256.chars().take(16).collect::<String>()),
        percent(model.accuracy),
        model.images,
        decimal(model.ece)
    );
    html.push_str("<div class=\"charts\"><div><h3>Per class</h3><table><tr><th class=\"l\">label</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>");
    for label in &model.labels {
        if let Some(c) = model.per_class.get(label) {
            let _ = write!(
                html,
                "<tr><td class=\"l\">{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td></tr>",
                escape(label),
                c.precision,
                c.recall,
                c.f1,
                c.support
            );
        }
    }
    html.push_str("</table>");
    confusion(html, model);
    html.push_str("</div><div><h3>Reliability</h3>");
    html.push_str(&reliability_svg(model));
    html.push_str("</div></div>");

    html.push_str(
        "<h3>Explanations</h3><table><tr><th class=\"l\">method</th><th>explained</th>\
         <th>median in brain</th><th>correct</th><th>wrong</th>\
         <th>correct, mostly outside</th><th>empty map</th><th>unfaithful</th>\
         <th>deletion AUC</th><th>insertion AUC</th></tr>",
    );
    for method in &model.methods {
        if let Some(error) = &method.error {
            let _ = write!(
                html,
                "<tr><td class=\"l\">{}</td><td class=\"l\" colspan=\"9\">not run: {}</td></tr>",
                escape(&method.method),
                escape(error)
            );
            continue;
        }
        let _ = write!(
            html,
            "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td><b>{}</b></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&method.method),
            method.explained,
            decimal(method.median_in_brain_fraction),
            decimal(method.median_in_brain_fraction_correct),
            decimal(method.median_in_brain_fraction_wrong),
            percent(method.outside_brain_share_correct),
            percent(method.empty_map_share),
            percent(method.unfaithful_share),
            decimal(method.median_deletion_auc),
            decimal(method.median_insertion_auc)
        );
    }
    html.push_str("</table>");
    for method in model.methods.iter().filter(|m| m.error.is_none()) {
        method_detail(html, model, method, threshold);
    }
    html.push_str("</section>");
}

fn confusion(html: &mut String, model: &ModelAudit) {
    html.push_str("<h3>Confusion matrix</h3><table><tr><th class=\"l\">true \\ predicted</th>");
    for label in &model.labels {
        let _ = write!(html, "<th>{}</th>", escape(label));
    }
    html.push_str("</tr>");
    for (label, row) in model.labels.iter().zip(&model.confusion) {
        let total: usize = row.iter().sum();
        let _ = write!(html, "<tr><th class=\"l\">{}</th>", escape(label));
        for &count in row {
            let share = if total > 0 {
                count as f64 / total as f64
            } else {
                0.0
            };
            // shade by the share of the row: the diagonal dark when the model is right
            let lightness = 97.0 - 55.0 * share;
            let text = if share > 0.6 { "#fff" } else { "#1d232b" };
            let _ = write!(
                html,
                "<td style=\"background:hsl(212,60%,{lightness:.0}%);color:{text}\">{count}</td>"
            );
        }
        html.push_str("</tr>");
    }
    html.push_str("</table>");
}

/// Chart geometry shared by the SVGs: plot origin and size inside a `WIDTH` x `HEIGHT` box.
const WIDTH: f64 = 360.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 48.0;
const TOP: f64 = 16.0;
const PLOT: f64 = 240.0;

fn axes(svg: &mut String, x_label: &str, y_label: &str, y_max: f64, y_percent: bool) {
    let bottom = TOP + PLOT;
    let _ = write!(
        svg,
        "<line x1=\"{LEFT}\" y1=\"{bottom}\" x2=\"{}\" y2=\"{bottom}\" stroke=\"#333\"/>\
         <line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{bottom}\" stroke=\"#333\"/>",
        LEFT + PLOT
    );
    for i in 0..=5 {
        let t = f64::from(i) / 5.0;
        let x = LEFT + t * PLOT;
        let y = bottom - t * PLOT;
        let y_text = if y_percent {
            format!("{:.0}%", 100.0 * t * y_max)
        } else {
            format!("{:.0}", t * y_max)
        };
        let _ = write!(
            svg,
            "<text x=\"{x}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{t:.1}</text>\
             <text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{y_text}</text>\
             <line x1=\"{}\" y1=\"{y}\" x2=\"{LEFT}\" y2=\"{y}\" stroke=\"#333\"/>",
            bottom + 13.0,
            LEFT - 5.0,
            y + 3.0,
            LEFT - 3.0
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text>\
         <text x=\"12\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\" \
         transform=\"rotate(-90 12 {})\">{}</text>",
        LEFT + PLOT / 2.0,
        bottom + 30.0,
        escape(x_label),
        TOP + PLOT / 2.0,
        TOP + PLOT / 2.0,
        escape(y_label)
    );
}

/// The reliability diagram: accuracy per confidence bin against the diagonal.
fn reliability_svg(model: &ModelAudit) -> String {
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         role=\"img\" aria-label=\"reliability diagram of {}\">",
        escape(&model.model)
    );
    axes(&mut svg, "confidence", "accuracy", 1.0, true);
    let bottom = TOP + PLOT;
    for bin in &model.reliability {
        let (Some(accuracy), Some(confidence)) = (bin.accuracy, bin.confidence) else {
            continue;
        };
        let x = LEFT + bin.lower * PLOT + 1.0;
        let width = (bin.upper - bin.lower) * PLOT - 2.0;
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{width:.1}\" height=\"{:.1}\" \
             fill=\"#3b7dd8\"><title>{} images, confidence {confidence:.3}, accuracy \
             {accuracy:.3}</title></rect>\
             <rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{width:.1}\" height=\"2\" fill=\"#b00020\"/>",
            bottom - accuracy * PLOT,
            accuracy * PLOT,
            bin.count,
            bottom - confidence * PLOT - 1.0
        );
    }
    let _ = write!(
        svg,
        "<line x1=\"{LEFT}\" y1=\"{bottom}\" x2=\"{}\" y2=\"{TOP}\" stroke=\"#888\" \
         stroke-dasharray=\"4 3\"/></svg>\
         <div class=\"muted\">bars: accuracy per confidence bin; red ticks: mean confidence; \
         dashed: perfect calibration</div>",
        LEFT + PLOT
    );
    svg
}

/// Histograms of in-brain fractions, correct and wrong predictions, with the threshold.
fn in_brain_svg(method: &MethodAudit, threshold: f32) -> String {
    let correct_total: usize = method.in_brain_histogram_correct.iter().sum();
    let wrong_total: usize = method.in_brain_histogram_wrong.iter().sum();
    let share = |count: usize, total: usize| {
        if total > 0 {
            count as f64 / total as f64
        } else {
            0.0
        }
    };
    let y_max = method
        .in_brain_histogram_correct
        .iter()
        .map(|&c| share(c, correct_total))
        .chain(
            method
                .in_brain_histogram_wrong
                .iter()
                .map(|&c| share(c, wrong_total)),
        )
        .fold(0.0f64, f64::max)
        .max(0.05);
    let y_max = (y_max * 10.0).ceil() / 10.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         role=\"img\" aria-label=\"in-brain fractions of {}\">",
        escape(&method.method)
    );
    axes(
        &mut svg,
        "in-brain fraction",
        "share of predictions",
        y_max,
        true,
    );
    let bottom = TOP + PLOT;
    let bins = method.in_brain_histogram_correct.len().max(1) as f64;
    let bar = PLOT / bins / 2.0 - 1.0;
    for (series, (counts, total, colour)) in [
        (&method.in_brain_histogram_correct, correct_total, "#3b7dd8"),
        (&method.in_brain_histogram_wrong, wrong_total, "#e08a1e"),
    ]
    .into_iter()
    .enumerate()
    {
        for (i, &count) in counts.iter().enumerate() {
            let height = share(count, total) / y_max * PLOT;
            let x = LEFT + i as f64 / bins * PLOT + 1.0 + series as f64 * (bar + 1.0);
            let _ = write!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{height:.1}\" \
                 fill=\"{colour}\"><title>{count}</title></rect>",
                bottom - height
            );
        }
    }
    let x = LEFT + f64::from(threshold) * PLOT;
    let _ = write!(
        svg,
        "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{bottom}\" stroke=\"#b00020\" \
         stroke-dasharray=\"5 3\"/></svg><div class=\"muted\"><span style=\"color:#3b7dd8\">\
         &#9632;</span> correct ({correct_total}) <span style=\"color:#e08a1e\">&#9632;</span> \
         wrong ({wrong_total}); left of the red line: flagged evidence-outside-brain</div>"
    );
    svg
}

/// A two-column table of shares per true label.
fn shares_by_label(
    html: &mut String,
    heading: &str,
    shares: &std::collections::BTreeMap<String, Option<f64>>,
) {
    let _ = write!(
        html,
        "<table><tr><th class=\"l\">true label</th><th>{heading}</th></tr>"
    );
    for (label, share) in shares {
        let _ = write!(
            html,
            "<tr><td class=\"l\">{}</td><td>{}</td></tr>",
            escape(label),
            percent(*share)
        );
    }
    html.push_str("</table>");
}

fn method_detail(html: &mut String, model: &ModelAudit, method: &MethodAudit, threshold: f32) {
    let _ = write!(
        html,
        "<h3 id=\"{0}-{1}\">{1}</h3><div class=\"charts\"><div>{2}</div><div>",
        escape(&model.model),
        escape(&method.method),
        in_brain_svg(method, threshold)
    );
    shares_by_label(
        html,
        "correct, mostly outside",
        &method.outside_brain_share_by_label,
    );
    if !method.outside_concept_share_by_label.is_empty() {
        shares_by_label(
            html,
            "SAE evidence from concepts mostly outside the brain",
            &method.outside_concept_share_by_label,
        );
    }
    html.push_str("</div></div>");
    if method.gallery.is_empty() {
        html.push_str(
            "<p class=\"muted\">No correct prediction with evidence mostly outside the brain.</p>",
        );
        return;
    }
    let _ = write!(
        html,
        "<p>Correct predictions whose {} evidence lies furthest outside the brain:</p>\
         <div class=\"gallery\">",
        escape(&method.method)
    );
    for entry in &method.gallery {
        gallery_figure(html, entry);
    }
    html.push_str("</div>");
}

fn gallery_figure(html: &mut String, entry: &GalleryEntry) {
    let data = base64::engine::general_purpose::STANDARD.encode(&entry.jpeg);
    let _ = write!(
        html,
        "<figure><img alt=\"{0} and its map\" src=\"data:image/jpeg;base64,{data}\">\
         <figcaption>{1}: {2}, p = {3:.3}, in brain {4:.0}%</figcaption></figure>",
        escape(&entry.image.display().to_string()),
        escape(
            &entry
                .image
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
        escape(&entry.label),
        entry.probability,
        100.0 * entry.in_brain_fraction
    );
}

fn failures(html: &mut String, report: &AuditReport) {
    if report.failures.is_empty() {
        return;
    }
    let _ = write!(
        html,
        "<section id=\"failures\"><h2>Failures ({})</h2><table><tr><th class=\"l\">file</th>\
         <th class=\"l\">model</th><th class=\"l\">method</th><th class=\"l\">message</th></tr>",
        report.failures.len()
    );
    for failure in &report.failures {
        let _ = write!(
            html,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td>\
             <td class=\"l\">{}</td></tr>",
            escape(&failure.file.display().to_string()),
            escape(&failure.model),
            escape(failure.method.as_deref().unwrap_or("")),
            escape(&failure.message)
        );
    }
    html.push_str("</table></section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_files_is_escaped() {
        assert_eq!(
            escape("<img src=x onerror='a'>&\""),
            "&lt;img src=x onerror=&#39;a&#39;&gt;&amp;&quot;"
        );
    }
}
