//! The blocks as report.md and as a self-contained report.html.

use std::fmt::Write as _;

use super::{Block, Report};

impl Report<'_> {
    pub(crate) fn markdown(&self) -> String {
        let mut md = format!("# {}\n", self.title());
        for block in self.blocks() {
            md.push('\n');
            match block {
                Block::Heading(t) => {
                    let _ = writeln!(md, "## {t}");
                }
                Block::Para(t) => {
                    let _ = writeln!(md, "{t}");
                }
                Block::Bullets(items) => items.iter().for_each(|i| {
                    let _ = writeln!(md, "- {i}");
                }),
                Block::Numbered(items) => items.iter().enumerate().for_each(|(n, i)| {
                    let _ = writeln!(md, "{}. {i}", n + 1);
                }),
                Block::Table(header, rows) => md.push_str(&markdown_table(&header, &rows)),
                Block::Figure(stem, caption, _) => {
                    let _ = writeln!(md, "![{caption}]({stem}.svg)\n\n{caption}");
                }
            }
        }
        md
    }

    pub(crate) fn html(&self) -> String {
        let mut h = format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>ckpt: {}</title><style>\
             body{{font-family:sans-serif;max-width:1000px;margin:2em auto;line-height:1.45;color:#222}}\
             table{{border-collapse:collapse;font-size:0.9em}}td,th{{border:1px solid #bbb;padding:3px 8px;text-align:right}}\
             th{{background:#eee}}figure{{margin:1em 0}}</style></head><body>\n<h1>{}</h1>\n",
            escape(&self.title()),
            escape(&self.title())
        );
        for block in self.blocks() {
            match block {
                Block::Heading(t) => {
                    let _ = writeln!(h, "<h2>{}</h2>", escape(&t));
                }
                Block::Para(t) => {
                    let _ = writeln!(h, "<p>{}</p>", escape(&t));
                }
                Block::Bullets(items) => h.push_str(&html_list("ul", &items)),
                Block::Numbered(items) => h.push_str(&html_list("ol", &items)),
                Block::Table(header, rows) => {
                    let header: Vec<&str> = header.iter().map(String::as_str).collect();
                    h.push_str(&html_table(&header, &rows));
                }
                // The SVG is our own output (plotters escapes its text), so
                // it is inlined as is: the page needs no other file.
                Block::Figure(stem, caption, svg) => {
                    let _ = writeln!(
                        h,
                        "<figure id=\"{}\">{svg}<figcaption>{}</figcaption></figure>",
                        escape(&stem),
                        escape(&caption)
                    );
                }
            }
        }
        h.push_str("</body></html>\n");
        h
    }
}

fn html_list(tag: &str, items: &[String]) -> String {
    let mut h = format!("<{tag}>\n");
    for i in items {
        let _ = writeln!(h, "<li>{}</li>", escape(i));
    }
    let _ = writeln!(h, "</{tag}>");
    h
}

fn markdown_table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut md = format!(
        "| {} |\n|{}\n",
        header.join(" | "),
        "---|".repeat(header.len())
    );
    for row in rows {
        let _ = writeln!(md, "| {} |", row.join(" | "));
    }
    md
}

fn html_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut h = String::from("<table>\n<tr>");
    for c in header {
        let _ = write!(h, "<th>{}</th>", escape(c));
    }
    h.push_str("</tr>\n");
    for row in rows {
        h.push_str("<tr>");
        for c in row {
            let _ = write!(h, "<td>{}</td>", escape(c));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
    h
}

pub(super) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_html() {
        assert_eq!(
            escape("<a href=\"x\">&</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }
}
