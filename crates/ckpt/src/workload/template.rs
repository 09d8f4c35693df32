//! The command template of a user's workload: `python3 /app/forker.py
//! {children}` becomes an argument vector per grid point. The template is
//! split into words first and the placeholders are filled in afterwards, so
//! a value can never change how the command is split, and no shell ever
//! sees it.

use anyhow::{bail, Context, Result};

use crate::model::{Axis, Point};

/// A parsed, checked command template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    words: Vec<String>,
}

impl Template {
    /// Splits `text` with shell quoting rules and checks that every
    /// `{placeholder}` names a sweep parameter.
    pub(crate) fn parse(text: &str) -> Result<Template> {
        Template::parse_for("--cmd", text)
    }

    /// As `parse`, for the option `flag` (named in its errors).
    pub(crate) fn parse_for(flag: &str, text: &str) -> Result<Template> {
        let words =
            shlex::split(text).with_context(|| format!("{flag} '{text}' has unbalanced quotes"))?;
        if words.is_empty() {
            bail!("{flag} is empty: give the command to run");
        }
        for word in &words {
            for name in placeholders(word)? {
                if !Axis::ALL.iter().any(|a| a.name() == name) {
                    bail!(
                        "{flag} uses the unknown placeholder {{{name}}}; known ones are {}",
                        Axis::ALL
                            .iter()
                            .map(|a| format!("{{{}}}", a.name()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
            }
        }
        Ok(Template { words })
    }

    /// The argument vector for one grid point.
    pub(crate) fn render(&self, point: &Point) -> Vec<String> {
        self.words
            .iter()
            .map(|word| {
                Axis::ALL.iter().fold(word.clone(), |w, a| {
                    w.replace(&format!("{{{}}}", a.name()), &a.of(point).to_string())
                })
            })
            .collect()
    }

    /// The axes the template uses: the others do not change the workload.
    pub(crate) fn uses(&self, axis: Axis) -> bool {
        let needle = format!("{{{}}}", axis.name());
        self.words.iter().any(|w| w.contains(&needle))
    }
}

/// The names between braces in one word; an unclosed brace is an error.
fn placeholders(word: &str) -> Result<Vec<&str>> {
    let mut names = Vec::new();
    let mut rest = word;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .with_context(|| format!("--cmd: '{word}' has a '{{' without its '}}'"))?;
        names.push(&after[..close]);
        rest = &after[close + 1..];
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_placeholders_after_splitting() {
        let t = Template::parse("sh -c 'echo {children} kids' --mem={memory_mib}").unwrap();
        let point = Point {
            children: 5,
            memory_mib: 64,
            ..Point::default()
        };
        assert_eq!(t.render(&point), ["sh", "-c", "echo 5 kids", "--mem=64"]);
        assert!(t.uses(Axis::Children) && t.uses(Axis::MemoryMib));
        assert!(!t.uses(Axis::Threads));
    }

    #[test]
    fn refuses_unknown_placeholders_and_bad_quoting() {
        let err = format!("{:#}", Template::parse("app {childs}").unwrap_err());
        assert!(
            err.contains("{childs}") && err.contains("{children}"),
            "{err}"
        );
        assert!(Template::parse("app 'open").is_err());
        assert!(Template::parse("app {children").is_err());
        assert!(Template::parse("   ").is_err());
    }
}
