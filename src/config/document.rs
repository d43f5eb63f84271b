//! Where keys and values sit in the configuration text, so that every error can name the key
//! path, quote the value as written and give its line and column.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::Problem;

/// One key or array element of the document.
#[derive(Debug, Clone)]
struct Entry {
    /// `rules[1].select.modality`.
    path: String,
    /// Number of path segments (keys and indices).
    depth: usize,
    /// The key, for table entries.
    key: Option<Range<usize>>,
    /// The value; for a `[table]` or `[[array]]` item, its header.
    value: Range<usize>,
    /// Whether the value's text is the value itself (not a table header).
    literal: bool,
}

/// The configuration text and the position of every key and value in it.
#[derive(Debug, Clone)]
pub(crate) struct Document<'t> {
    text: &'t str,
    entries: Vec<Entry>,
}

impl<'t> Document<'t> {
    /// Indexes `text`. TOML syntax errors come back as a problem naming the nearest key.
    pub(crate) fn parse(text: &'t str) -> Result<Self, Problem> {
        match DeTable::parse(text) {
            Ok(table) => Ok(Self::index(text, &table)),
            Err(error) => {
                // index what could be parsed, to name the key near the error
                let (partial, _) = DeTable::parse_recoverable(text);
                let document = Self::index(text, &partial);
                Err(document.problem_at(error.span(), error.message().to_string()))
            }
        }
    }

    fn index(text: &'t str, table: &Spanned<DeTable<'_>>) -> Self {
        let mut entries = Vec::new();
        walk_table(table.get_ref(), "", 0, &mut entries);
        Self { text, entries }
    }

    /// A problem at a byte span of the text (from a TOML or serde error): the key path is
    /// the innermost key or value that contains it.
    pub(crate) fn problem_at(&self, span: Option<Range<usize>>, message: String) -> Problem {
        let Some(span) = span else {
            return Problem {
                key: String::new(),
                value: None,
                position: None,
                message,
            };
        };
        let at = span.start;
        let inside =
            |r: &Range<usize>| r.start <= at && (at < r.end || r.is_empty() && at == r.start);
        let entry = self
            .entries
            .iter()
            .filter(|e| e.key.as_ref().is_some_and(inside) || inside(&e.value))
            .max_by_key(|e| e.depth);
        Problem {
            key: entry.map(|e| e.path.clone()).unwrap_or_default(),
            value: entry.and_then(|e| self.literal(e)),
            position: Some(self.line_column(at)),
            message,
        }
    }

    /// A problem at a key path: the value as written and its position come from the text
    /// when the key is there; `fallback` is the value otherwise.
    pub(crate) fn problem(&self, key: &str, fallback: Option<String>, message: String) -> Problem {
        let entry = self.entries.iter().find(|e| e.path == key);
        Problem {
            key: key.to_string(),
            value: entry.and_then(|e| self.literal(e)).or(fallback),
            position: entry.map(|e| self.line_column(e.value.start)),
            message,
        }
    }

    fn literal(&self, entry: &Entry) -> Option<String> {
        if !entry.literal {
            return None;
        }
        let raw = self.text.get(entry.value.clone())?;
        let mut flat = raw.split_whitespace().collect::<Vec<_>>().join(" ");
        const LONGEST: usize = 120;
        if flat.chars().count() > LONGEST {
            flat = flat.chars().take(LONGEST).collect::<String>() + "...";
        }
        Some(flat)
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn line_column(&self, offset: usize) -> (usize, usize) {
        let before = self.text.get(..offset.min(self.text.len())).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }
}

fn segment(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

fn walk_table(table: &DeTable<'_>, prefix: &str, depth: usize, entries: &mut Vec<Entry>) {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            segment(key.get_ref())
        } else {
            format!("{prefix}.{}", segment(key.get_ref()))
        };
        entries.push(Entry {
            path: path.clone(),
            depth: depth + 1,
            key: Some(key.span()),
            value: value.span(),
            literal: is_literal(value),
        });
        walk_value(value.get_ref(), &path, depth + 1, entries);
    }
}

fn walk_value(value: &DeValue<'_>, path: &str, depth: usize, entries: &mut Vec<Entry>) {
    match value {
        DeValue::Table(table) => walk_table(table, path, depth, entries),
        DeValue::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{index}]");
                entries.push(Entry {
                    path: item_path.clone(),
                    depth: depth + 1,
                    key: None,
                    value: item.span(),
                    literal: is_literal(item),
                });
                walk_value(item.get_ref(), &item_path, depth + 1, entries);
            }
        }
        _ => {}
    }
}

/// Scalars, arrays and inline tables are written where their span says; `[table]` and
/// `[[array]]` spans are only their headers (the text starts with `[` but is not a literal
/// array of values).
fn is_literal(value: &Spanned<DeValue<'_>>) -> bool {
    match value.get_ref() {
        DeValue::Table(_) => false,
        // an `[[array]]` shares its span with its first item's header
        DeValue::Array(items) => items
            .first()
            .is_none_or(|first| first.span().start > value.span().start),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_values_and_positions() {
        let text = "[[rules]]\nname = \"a\"\n[[rules]]\nname = \"b\"\n[rules.select]\nmodality = [\"MR\", 3]\n";
        let doc = Document::parse(text).unwrap_or_else(|p| panic!("{p}"));
        let p = doc.problem("rules[1].select.modality[1]", None, "bad".into());
        assert_eq!(p.value.as_deref(), Some("3"));
        assert_eq!(p.position, Some((6, 19)));
        let at = doc.problem_at(Some(75..76), "x".into());
        assert_eq!(at.key, "rules[1].select.modality[1]");
        // a missing key reported at the [[rules]] header of the second rule
        let header = doc.problem_at(Some(21..30), "missing".into());
        assert_eq!(header.key, "rules[1]");
        assert_eq!(header.value, None);
        assert_eq!(
            doc.problem("rules[0].name", None, "x".into()).position,
            Some((2, 8))
        );
        assert_eq!(
            doc.problem("rules[0].select", None, "x".into()).position,
            None
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        let Err(problem) = Document::parse("[explain]\nopacity = = 3\n") else {
            panic!("accepted bad TOML");
        };
        assert_eq!(problem.position.map(|p| p.0), Some(2));
    }

    #[test]
    fn odd_keys_are_quoted() {
        assert_eq!(segment("a.b"), "\"a.b\"");
        assert_eq!(segment("top_k"), "top_k");
    }
}
