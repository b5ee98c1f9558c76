//! Rules files as operators write them: TOML text to [`Rules`] checked whole ([`parse_rules`]), every problem
//! reported with its line and the path of its field, escaped and bounded, so that a file that fails is refused
//! before it reaches the registry, let alone a client. `docs/CONTROL_PLANE.md` documents the format.
//!
//! ```
//! let text = "service = \"Calc\"\n\n[[routes]]\nname = \"canary\"\nto = [{ subset = \"version\", weight = 1 }]\n";
//! let error = rpc_registry::rules_file::parse_rules(text).unwrap_err();
//! assert_eq!(
//!     error.to_string(),
//!     "line 5, column 18: routes[0].to[0].subset: subset `version`: expected KEY=VALUE pairs separated by \
//!      commas, found `version`"
//! );
//! ```

use std::ops::Range;

use rpc_core::rules::{Problem, Rules};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::cli::{MAX_LINE_CHARS, escape};

/// The largest rules file read: 1 MiB.
pub const MAX_RULES_FILE: usize = 1 << 20;

/// Why a rules file was refused: one line per problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .lines.join("\n"))]
pub struct RulesFileError {
    /// Each problem, `line N[, column C]: FIELD: PROBLEM`, escaped and bounded.
    pub lines: Vec<String>,
}

/// Reads and checks the rules in `text`.
pub fn parse_rules(text: &str) -> Result<Rules, RulesFileError> {
    if text.len() > MAX_RULES_FILE {
        return Err(RulesFileError {
            lines: vec![format!(
                "the file has {} bytes, over the limit of {MAX_RULES_FILE}",
                text.len()
            )],
        });
    }
    let document = DeTable::parse(text);
    let mut rules: Rules = toml::from_str(text).map_err(|e| {
        let span = e.span();
        let field = match (&document, &span) {
            (Ok(table), Some(span)) => path_at(table.get_ref(), span.start),
            _ => String::new(),
        };
        let place = span.map_or_else(|| "the file".to_owned(), |s| position(text, s.start));
        let field = if field.is_empty() {
            String::new()
        } else {
            format!("{field}: ")
        };
        RulesFileError {
            lines: vec![bounded(&format!("{place}: {field}{}", e.message()))],
        }
    })?;
    rules.check().map_err(|e| RulesFileError {
        lines: e
            .problems
            .iter()
            .map(|problem| located(text, document.as_ref().ok(), problem))
            .collect(),
    })?;
    Ok(rules)
}

/// One line that says what `rules` declare: `rules for Calc: 2 routes (canary-header, split), policies for 1
/// method (div), 0 limits, no authorization`.
pub fn summary(rules: &Rules) -> String {
    let names = |items: Vec<&str>| {
        if items.is_empty() {
            String::new()
        } else {
            format!(" ({})", items.join(", "))
        }
    };
    let routes: Vec<&str> = rules.routes.iter().map(|r| r.name.as_str()).collect();
    let methods: Vec<&str> = rules.methods.keys().map(String::as_str).collect();
    let authorization = match &rules.authorization {
        None => "no authorization (every caller may call every method)".to_owned(),
        Some(a) => format!(
            "authorization: {} grants, default {}",
            a.grants.len(),
            match a.default {
                rpc_core::rules::Access::Allow => "allow",
                rpc_core::rules::Access::Deny => "deny",
            }
        ),
    };
    bounded(&format!(
        "rules for {}: {} routes{}, policies for {} methods{}, {} limits, {authorization}",
        rules.service,
        routes.len(),
        names(routes.clone()),
        methods.len(),
        names(methods.clone()),
        rules.limits.len(),
    ))
}

/// A problem of the checks, with the line of its field (or of the nearest field above it that is written).
fn located(text: &str, document: Option<&Spanned<DeTable<'_>>>, problem: &Problem) -> String {
    let line = document
        .and_then(|d| span_of(d.get_ref(), &problem.field))
        .map(|span| format!("line {}: ", line_of(text, span.start)))
        .unwrap_or_default();
    bounded(&format!("{line}{problem}"))
}

fn bounded(line: &str) -> String {
    escape(line, MAX_LINE_CHARS).into_owned()
}

/// `line L, column C` of byte `offset`.
fn position(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {}, column {column}", line_of(text, offset))
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The path of the deepest field whose key or value holds byte `offset` (`routes[0].to[0].subset`), or an
/// empty path. Tables are searched inside, not by their own span: a `[methods.div.fault]` header's table spans
/// only the header.
fn path_at(table: &DeTable<'_>, offset: usize) -> String {
    find(Place::Table(table), offset).unwrap_or_default()
}

fn find(place: Place<'_, '_>, offset: usize) -> Option<String> {
    let inside = |value: &Spanned<DeValue<'_>>| match value.get_ref() {
        DeValue::Table(table) => find(Place::Table(table), offset),
        DeValue::Array(items) => find(Place::Array(items), offset),
        _ => None,
    };
    match place {
        Place::Table(table) => table.iter().find_map(|(key, value)| {
            let name = key.get_ref();
            match inside(value) {
                Some(rest) if rest.starts_with('[') => Some(format!("{name}{rest}")),
                Some(rest) => Some(format!("{name}.{rest}")),
                None => (value.span().contains(&offset) || key.span().contains(&offset))
                    .then(|| name.to_string()),
            }
        }),
        Place::Array(items) => {
            items
                .iter()
                .enumerate()
                .find_map(|(i, value)| match inside(value) {
                    Some(rest) if rest.starts_with('[') => Some(format!("[{i}]{rest}")),
                    Some(rest) => Some(format!("[{i}].{rest}")),
                    None => value.span().contains(&offset).then(|| format!("[{i}]")),
                })
        }
    }
}

/// Where the walk of [`path_at`] and [`span_of`] stands.
enum Place<'a, 'i> {
    Table(&'a DeTable<'i>),
    Array(&'a [Spanned<DeValue<'i>>]),
}

/// The span of the field at `path` (`routes[2].to`), or of the deepest part of it the file writes.
fn span_of(table: &DeTable<'_>, path: &str) -> Option<Range<usize>> {
    let mut here = Place::Table(table);
    let mut found = None;
    for segment in path.split('.') {
        let (name, indexes) = match segment.find('[') {
            Some(at) => (&segment[..at], &segment[at..]),
            None => (segment, ""),
        };
        let mut value = match here {
            Place::Table(table) => table.get(name)?,
            Place::Array(_) => return found,
        };
        found = Some(value.span());
        for index in indexes.split(['[', ']']).filter(|s| !s.is_empty()) {
            let i: usize = index.parse().ok()?;
            value = match value.get_ref() {
                DeValue::Array(items) => match items.get(i) {
                    Some(item) => item,
                    None => return found,
                },
                _ => return found,
            };
            found = Some(value.span());
        }
        here = match value.get_ref() {
            DeValue::Table(table) => Place::Table(table),
            DeValue::Array(items) => Place::Array(items),
            _ => return found,
        };
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_file_reads_whole() {
        let text = include_str!("../../examples/rules/canary.toml");
        let rules = parse_rules(text).unwrap();
        assert_eq!(rules.service, "Calc");
        assert_eq!(rules.routes.len(), 2);
    }

    #[test]
    fn every_problem_names_its_line_and_field() {
        let text = "\
service = \"Calc\"

[[routes]]
name = \"all\"

[[routes]]
name = \"late\"
to = [{ subset = \"version=v2\", weight = 0 }]

[methods.div]
deadline_ms = 0
";
        let error = parse_rules(text).unwrap_err();
        assert_eq!(
            error.lines,
            [
                "line 6: routes[1]: no call can reach it: routes[0] before it has no condition and takes every call",
                "line 8: routes[1].to: every split has weight 0: the route could send a call nowhere",
                "line 11: methods.div.deadline_ms: expected 1 to 3600000 milliseconds, found 0",
            ]
        );
    }

    #[test]
    fn type_errors_name_their_line_column_and_field() {
        let error = |text: &str| parse_rules(text).unwrap_err().to_string();
        assert_eq!(
            error("service = \"Calc\"\n[methods.div.fault]\nabort_percent = 150\n"),
            "line 3, column 17: methods.div.fault.abort_percent: expected a percentage from 0 to 100, found 150"
        );
        assert!(
            error("service = \"Calc\"\nrutes = []\n")
                .starts_with("line 2, column 1: rutes: unknown field `rutes`"),
        );
        assert!(error("service = \"Calc\"\n[[routes]\n").starts_with("line 2, column "));
    }

    #[test]
    fn hostile_text_is_escaped_and_bounded() {
        let text = format!(
            "service = \"Calc\"\n\"\u{1b}[2J{}\" = 1\n",
            "x".repeat(5000)
        );
        let error = parse_rules(&text).unwrap_err().to_string();
        assert!(!error.contains('\u{1b}'), "{error}");
        assert!(
            error.chars().count() <= MAX_LINE_CHARS + 1,
            "{} chars",
            error.len()
        );
        let huge = "#".repeat(MAX_RULES_FILE + 1);
        assert_eq!(
            parse_rules(&huge).unwrap_err().to_string(),
            format!(
                "the file has {} bytes, over the limit of {MAX_RULES_FILE}",
                MAX_RULES_FILE + 1
            )
        );
    }
}
