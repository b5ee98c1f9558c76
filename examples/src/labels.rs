//! The `--label KEY=VALUE` flag of servers (repeatable: the labels an instance registers with, such as
//! `version=v2` or `zone=a`) and the `--subset KEY=VALUE,...` flag of clients (call only the instances
//! labelled so).

use std::collections::BTreeMap;

use rpc_core::balance::{Subset, check_key};

/// The longest label value `--label` takes: 253 bytes.
pub const MAX_LABEL_VALUE: usize = 253;

/// `--label KEY=VALUE`, repeatable.
#[derive(clap::Args, Debug, Default)]
pub struct LabelArgs {
    /// A label this instance registers with, as KEY=VALUE (for example version=v2); repeatable. A key is 1 to
    /// 63 letters, digits and `._-/`; a value up to 253 printable characters.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
}

impl LabelArgs {
    /// The labels, added to `base` (a label of the same key replaces the base's).
    pub fn merged(&self, base: BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut labels = base;
        labels.extend(self.labels.iter().cloned());
        labels
    }
}

/// Parses one `KEY=VALUE` label; the error says what was expected and what came.
pub fn parse_label(text: &str) -> Result<(String, String), String> {
    let shown = rpc_core::text::quoted(text, 64);
    let Some((key, value)) = text.split_once('=') else {
        return Err(format!("expected KEY=VALUE, found `{shown}`"));
    };
    check_key(key)?;
    if value.len() > MAX_LABEL_VALUE || value.chars().any(|c| c.is_control() || c == ',') {
        return Err(format!(
            "a label's value is up to {MAX_LABEL_VALUE} printable characters without `,`, found `{shown}`"
        ));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// `--subset KEY=VALUE,...`.
#[derive(clap::Args, Debug, Default)]
pub struct SubsetArgs {
    /// Call only the instances with these labels, as KEY=VALUE pairs separated by commas (for example
    /// version=v2,zone=a).
    #[arg(long, value_name = "KEY=VALUE,...", value_parser = parse_subset)]
    pub subset: Option<Subset>,
}

fn parse_subset(text: &str) -> Result<Subset, String> {
    text.parse()
        .map_err(|e: rpc_core::balance::SubsetError| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_is_key_equals_value_and_bad_ones_say_what_came() {
        assert_eq!(
            parse_label("version=v2"),
            Ok(("version".to_owned(), "v2".to_owned()))
        );
        assert_eq!(
            parse_label("version"),
            Err("expected KEY=VALUE, found `version`".to_owned())
        );
        assert!(
            parse_label("ver sion=2")
                .unwrap_err()
                .contains("`ver sion`")
        );
        let hostile = parse_label("k=\u{1b}[31m").unwrap_err();
        assert!(hostile.contains("\\u{1b}"), "{hostile}");
        assert!(parse_label(&format!("k={}", "v".repeat(300))).is_err());
    }
}
