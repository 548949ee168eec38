//! A hand-written SVG of how many nodes each node's view holds as alive,
//! suspect and dead over virtual time: one thin line per node and state
//! (alive green, suspect orange, dead red), readable at a glance.

use crate::views::Sample;

/// Drawing width in pixels.
pub const WIDTH: f64 = 900.0;
/// Drawing height in pixels.
pub const HEIGHT: f64 = 420.0;
/// Margin around the plot in pixels.
pub const MARGIN: f64 = 50.0;
/// Colours of alive, suspect and dead.
pub const COLOURS: [&str; 3] = ["#2a9d43", "#f08c00", "#d62828"];

/// Renders `samples` as a standalone SVG document titled `title`.
pub fn render(title: &str, samples: &[Sample]) -> String {
    let t_max = samples.last().map(|s| s.at).unwrap_or(1).max(1) as f64;
    let y_max = samples
        .iter()
        .flat_map(|s| s.counts.iter().flatten().flat_map(|c| c.iter().copied()))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let nodes = samples.first().map(|s| s.counts.len()).unwrap_or(0);
    let px = |t: u64| MARGIN + (t as f64 / t_max) * (WIDTH - 2.0 * MARGIN);
    let py = |v: u32| HEIGHT - MARGIN - (v as f64 / y_max) * (HEIGHT - 2.0 * MARGIN);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{MARGIN}\" y=\"20\" font-size=\"14\">{}</text>\n",
        escape(title)
    );
    // Axes and ticks.
    out.push_str(&format!(
        "<line x1=\"{MARGIN}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/>\n<line x1=\"{MARGIN}\" y1=\"{MARGIN}\" x2=\"{MARGIN}\" y2=\"{b}\" stroke=\"black\"/>\n",
        b = HEIGHT - MARGIN,
        r = WIDTH - MARGIN
    ));
    for k in 0..=5 {
        let t = (t_max * k as f64 / 5.0) as u64;
        let v = (y_max * k as f64 / 5.0).round() as u32;
        out.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.0}s</text>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v}</text>\n",
            px(t),
            HEIGHT - MARGIN + 16.0,
            t as f64 / 1000.0,
            MARGIN - 6.0,
            py(v) + 4.0
        ));
    }
    out.push_str(&format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">virtual time</text>\n<text x=\"14\" y=\"{:.1}\" transform=\"rotate(-90 14 {:.1})\" text-anchor=\"middle\">members in view</text>\n",
        WIDTH / 2.0,
        HEIGHT - 12.0,
        HEIGHT / 2.0,
        HEIGHT / 2.0
    ));
    // One polyline per node and state; a gap while the node is down.
    for (state, colour) in COLOURS.iter().enumerate() {
        for node in 0..nodes {
            let mut segment: Vec<String> = Vec::new();
            let flush = |segment: &mut Vec<String>, out: &mut String| {
                if segment.len() > 1 {
                    out.push_str(&format!(
                        "<polyline fill=\"none\" stroke=\"{colour}\" stroke-opacity=\"0.35\" stroke-width=\"1.2\" points=\"{}\"/>\n",
                        segment.join(" ")
                    ));
                }
                segment.clear();
            };
            for s in samples {
                match s.counts.get(node).copied().flatten() {
                    Some(c) => segment.push(format!("{:.1},{:.1}", px(s.at), py(c[state]))),
                    None => flush(&mut segment, &mut out),
                }
            }
            flush(&mut segment, &mut out);
        }
    }
    // Legend.
    for (k, (name, colour)) in ["alive", "suspect", "dead"].iter().zip(COLOURS).enumerate() {
        let x = WIDTH - MARGIN - 220.0 + k as f64 * 75.0;
        out.push_str(&format!(
            "<rect x=\"{x}\" y=\"28\" width=\"12\" height=\"12\" fill=\"{colour}\"/><text x=\"{}\" y=\"39\">{name}</text>\n",
            x + 16.0
        ));
    }
    out.push_str("</svg>\n");
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
